package caddyaauth

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// chainWriter decides, when the backend's response starts, whether it reaches the agent:
// when the backend ran into a downstream consent through the egress (decide returns
// true, having written our 202 to the underlying writer), the backend's response is
// discarded. Nothing is buffered: a normal response passes straight through.
type chainWriter struct {
	*caddyhttp.ResponseWriterWrapper
	decide  func() bool
	decided bool
	swapped bool
}

func (cw *chainWriter) WriteHeader(status int) {
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		if !cw.swapped {
			cw.ResponseWriterWrapper.WriteHeader(status) // informational: not the answer yet
		}
		return
	}
	if !cw.decided {
		cw.decided = true
		cw.swapped = cw.decide()
	}
	if !cw.swapped {
		cw.ResponseWriterWrapper.WriteHeader(status)
	}
}

func (cw *chainWriter) Write(p []byte) (int, error) {
	if !cw.decided {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.swapped {
		return len(p), nil
	}
	return cw.ResponseWriterWrapper.Write(p)
}

// ReadFrom keeps io.Copy (reverse_proxy's body copy) going through the decision.
func (cw *chainWriter) ReadFrom(r io.Reader) (int64, error) {
	if !cw.decided {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.swapped {
		return io.Copy(io.Discard, r)
	}
	return cw.ResponseWriterWrapper.ReadFrom(r)
}

// Flush flushes a passed-through response.
func (cw *chainWriter) Flush() {
	if cw.swapped {
		return
	}
	if !cw.decided {
		cw.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(cw.ResponseWriterWrapper.ResponseWriter).Flush()
}
