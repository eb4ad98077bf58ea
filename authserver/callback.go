package authserver

import (
	"net/url"
	"strings"
)

// validCallback accepts a callback URL only where the agent declared one (agent metadata
// callback_endpoint, draft-hardt-aauth §5.2; absent means no callbacks): an https URL on the
// declared endpoint's origin whose path is the declared path or below it (the agent may
// add path and query at run time), or, when the agent also sets
// localhost_callback_allowed, an http URL on a loopback host with a port and exactly the
// declared path, without a query (draft-hardt-aauth §5.2 on localhost callbacks). So an agent
// can only send the person's browser back to itself, never to an arbitrary loopback
// service. The callback is UX only: nothing secret passes through it.
func validCallback(raw string, rec *pendingRecord) (string, bool) {
	if raw == "" || len(raw) > maxCallbackLen || rec.CallbackEndpoint == "" || strings.ContainsAny(raw, "\\\x00") {
		return "", false
	}
	cu, err := url.Parse(rec.CallbackEndpoint)
	if err != nil {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.User != nil || u.Host == "" || u.Opaque != "" || hasDotSegment(u.Path) {
		return "", false
	}
	u.Fragment, u.RawFragment = "", ""
	declared := cu.EscapedPath()
	if strings.EqualFold(cu.Scheme, u.Scheme) && strings.EqualFold(cu.Host, u.Host) && pathUnder(u.EscapedPath(), declared) {
		return u.String(), true
	}
	if rec.LocalhostCallback && u.Scheme == "http" && u.Port() != "" && isLoopbackHost(u.Hostname()) &&
		u.RawQuery == "" && !u.ForceQuery && samePath(u.EscapedPath(), declared) {
		return u.String(), true
	}
	return "", false
}

// pathUnder reports whether p is base or a path below it.
func pathUnder(p, base string) bool {
	if samePath(p, base) {
		return true
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	return strings.HasPrefix(p, base)
}

// samePath compares paths, an empty path being "/".
func samePath(a, b string) bool {
	if a == "" {
		a = "/"
	}
	if b == "" {
		b = "/"
	}
	return a == b
}

// hasDotSegment reports a "." or ".." segment, which a browser would resolve away
// (escaping the declared path).
func hasDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

func isLoopbackHost(h string) bool {
	switch strings.ToLower(h) {
	case "127.0.0.1", "::1", "localhost":
		return true
	}
	return false
}

func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
