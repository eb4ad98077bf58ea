package egress

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// hopByHop are the connection-specific fields a proxy never forwards (RFC 9110 §7.6.1),
// plus Proxy-Authorization and Proxy-Connection, which only concern the hop to us.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// signatureFields are replaced by the egress's own signature.
var signatureFields = []string{"Signature", "Signature-Input", "Signature-Key"}

// CopyHeader copies src into dst without hop-by-hop fields, the fields the Connection
// header names, and the named extra fields.
func CopyHeader(dst, src http.Header, extra ...string) {
	drop := map[string]bool{}
	for _, f := range append(hopByHop, extra...) {
		drop[textproto.CanonicalMIMEHeaderKey(f)] = true
	}
	for _, v := range src.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				drop[textproto.CanonicalMIMEHeaderKey(f)] = true
			}
		}
	}
	for k, vv := range src {
		if drop[textproto.CanonicalMIMEHeaderKey(k)] {
			continue
		}
		dst[k] = append([]string(nil), vv...)
	}
}

// isOurs reports whether a field is in the gateway's X-Aauth-* namespace (either
// spelling), which never leaves for another resource.
func isOurs(name string) bool {
	n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
	return strings.HasPrefix(n, "x-aauth-")
}

// Outbound builds the request the egress sends to target for the backend's request r
// with body: r's method and fields, minus hop-by-hop fields, signature fields (the
// egress signs anew), and every X-Aauth-* field (handle, target, identity headers).
func Outbound(ctx context.Context, r *http.Request, target *url.URL, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, target.String(), rd)
	if err != nil {
		return nil, err
	}
	CopyHeader(out.Header, r.Header, signatureFields...)
	for k := range out.Header {
		if isOurs(k) {
			delete(out.Header, k)
		}
	}
	return out, nil
}

// Relay writes the downstream response to w: status, fields without hop-by-hop ones,
// body.
func Relay(w http.ResponseWriter, resp *http.Response) error {
	defer resp.Body.Close()
	CopyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	_, err := io.Copy(w, resp.Body)
	return err
}
