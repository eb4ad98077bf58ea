package caddyaauth

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// outageLogInterval is how often the Warn line about one unreachable issuer is repeated
// while the outage lasts; the lines in between are logged at Debug.
const outageLogInterval = time.Minute

// maxOutageKeys bounds the per-issuer memory of OutageLog (agent identifiers are chosen
// by clients); when full it is cleared, which at worst repeats a Warn line early.
const maxOutageKeys = 1024

// OutageLog rate-limits the Warn line logged when a verification could not be finished
// because a document could not be fetched: one line per issuer per minute, so an outage
// does not flood the log. The zero value is ready to use and safe for concurrent use.
type OutageLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	now  func() time.Time // nil: time.Now
}

// allow reports whether the Warn line for key is due, and claims it.
func (o *OutageLog) allow(key string) bool {
	if o == nil {
		return true
	}
	now := time.Now()
	if o.now != nil {
		now = o.now()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if t, ok := o.last[key]; ok && now.Sub(t) < outageLogInterval {
		return false
	}
	if o.last == nil || len(o.last) >= maxOutageKeys {
		o.last = map[string]time.Time{}
	}
	o.last[key] = now
	return true
}

// WriteUnavailable answers a verification that could not be finished (an
// *reqverify.UnavailableError: a document could not be fetched, or the shared replay
// store could not be asked) with 503, Retry-After (RFC 9110 §10.2.3) and the JSON error
// temporarily_unavailable naming what is missing, and logs it at
// Warn, rate-limited by ol per issuer (at Debug otherwise). Neither the answer nor the
// log carries the request's token or signature.
func WriteUnavailable(w http.ResponseWriter, r *http.Request, logger *zap.Logger, ol *OutageLog, ue *reqverify.UnavailableError) {
	noteUnavailable(w, r, logger, ol, ue)
	wire.WriteError(w, http.StatusServiceUnavailable, unavailableError(ue))
}

// unavailableError is the JSON error of a 503 for ue.
func unavailableError(ue *reqverify.UnavailableError) wire.Error {
	return wire.Error{Code: wire.CodeTemporarilyUnavailable, Description: ue.Msg}
}

// noteUnavailable is WriteUnavailable without the body: the log line and Retry-After.
func noteUnavailable(w http.ResponseWriter, r *http.Request, logger *zap.Logger, ol *OutageLog, ue *reqverify.UnavailableError) {
	level := zap.DebugLevel
	if ol.allow(ue.Issuer) {
		level = zap.WarnLevel
	}
	if c := logger.Check(level, "aauth: cannot verify the request now: a document or the shared state is unavailable"); c != nil {
		c.Write(zap.String("issuer", ue.Issuer), zap.String("reason", ue.Msg),
			zap.Int("retry_after", ue.RetryAfterSeconds()), zap.String("path", r.URL.Path), zap.String("remote_ip", r.RemoteAddr))
	}
	w.Header().Set("Retry-After", strconv.Itoa(ue.RetryAfterSeconds()))
}
