package caddyaauth

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
)

// Upstream header fields and their placeholders, our choice of what a verified request
// tells the upstream. The keys are the names
// users refer to in the `header` option.
var identityFields = []struct{ key, header string }{
	{"level", "X-Aauth-Level"},
	{"scheme", "X-Aauth-Scheme"},
	{"agent", "X-Aauth-Agent"},
	{"delegate", "X-Aauth-Delegate"},
	{"sub", "X-Aauth-Subject"},
	{"scope", "X-Aauth-Scope"},
	{"jkt", "X-Aauth-Key-Thumbprint"},
	{"txn", "X-Aauth-Txn"},
	{"issuer", "X-Aauth-Issuer"},
}

// handleField is the key of the `header` option that renames X-Aauth-Handle.
const handleField = "handle"

func isIdentityField(key string) bool {
	for _, f := range identityFields {
		if f.key == key {
			return true
		}
	}
	return false
}

// isIdentityHeaderName reports whether name is a field stripIdentityHeaders removes.
func isIdentityHeaderName(name string, renamed []string) bool {
	n := strings.ToLower(name)
	if hasIdentityPrefix(n) {
		return true
	}
	for _, r := range renamed {
		if strings.EqualFold(n, r) || strings.EqualFold(n, strings.ReplaceAll(r, "-", "_")) {
			return true
		}
	}
	return false
}

// hasIdentityPrefix reports whether the lowercased name is X-Aauth-*, in either the dash
// or the underscore spelling (CGI backends treat them alike).
func hasIdentityPrefix(n string) bool {
	return strings.HasPrefix(n, "x-aauth-") || strings.HasPrefix(n, "x_aauth_") || strings.HasPrefix(n, "x-aauth_") || strings.HasPrefix(n, "x_aauth-")
}

// stripIdentityHeaders removes every client-sent X-Aauth-* header, in either the dash or
// the underscore spelling (CGI backends treat them alike), plus any renamed field.
func stripIdentityHeaders(h http.Header, renamed []string) {
	for name := range h {
		if hasIdentityPrefix(strings.ToLower(name)) {
			delete(h, name)
		}
	}
	for _, name := range renamed {
		h.Del(name)
		h.Del(strings.ReplaceAll(name, "-", "_"))
		delete(h, strings.ReplaceAll(name, "-", "_"))
	}
}

// identityValues lists the verified facts of a request by field key.
func identityValues(res *reqverify.Result) map[string]string {
	v := map[string]string{
		"level":  res.Level,
		"scheme": res.Scheme,
		"agent":  res.Agent,
		"jkt":    res.Key.Thumbprint,
	}
	if res.Delegate != "" {
		v["delegate"] = res.Delegate
	}
	if t := res.Token; t != nil && res.Level == reqverify.LevelAuthorized {
		v["sub"], v["scope"], v["txn"], v["issuer"] = t.Claims.Subject, t.Claims.Scope, t.Claims.Txn, t.Claims.Issuer
	}
	return v
}

// principal is what {http.auth.user.id} carries: the user, else the agent, else the key.
func principal(v map[string]string) string {
	for _, k := range []string{"sub", "agent", "jkt"} {
		if v[k] != "" {
			return v[k]
		}
	}
	return ""
}

// setIdentity writes the verified facts into the upstream headers and placeholders.
func (h *Handler) setIdentity(r *http.Request, repl *caddy.Replacer, res *reqverify.Result) {
	vals := identityValues(res)
	for _, f := range identityFields {
		val := vals[f.key]
		repl.Set("http.aauth."+f.key, val)
		name := f.header
		if alt, ok := h.Headers[f.key]; ok {
			name = alt
		}
		if name == "" || name == "-" || val == "" {
			continue
		}
		r.Header.Set(name, val)
	}
	repl.Set("http.auth.user.id", principal(vals))
	for _, k := range []string{"agent", "sub", "scope", "level", "delegate"} {
		if vals[k] != "" {
			repl.Set("http.auth.user."+k, vals[k])
		}
	}
}
