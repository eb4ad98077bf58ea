package caddyaauth

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/decisionlog"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
)

// Upstream header fields and their placeholders, our choice of what a verified request
// tells the upstream. The keys are the names
// users refer to in the `header` option.
var identityFields = [...]struct{ key, header, placeholder string }{
	{"level", "X-Aauth-Level", "http.aauth.level"},
	{"scheme", "X-Aauth-Scheme", "http.aauth.scheme"},
	{"agent", "X-Aauth-Agent", "http.aauth.agent"},
	{"delegate", "X-Aauth-Delegate", "http.aauth.delegate"},
	{"sub", "X-Aauth-Subject", "http.aauth.sub"},
	{"scope", "X-Aauth-Scope", "http.aauth.scope"},
	{"jkt", "X-Aauth-Key-Thumbprint", "http.aauth.jkt"},
	{"txn", "X-Aauth-Txn", "http.aauth.txn"},
	{"issuer", "X-Aauth-Issuer", "http.aauth.issuer"},
}

// Indexes of identityFields.
const (
	fieldLevel = iota
	fieldScheme
	fieldAgent
	fieldDelegate
	fieldSub
	fieldScope
	fieldJKT
	fieldTxn
	fieldIssuer
)

// userFields are the identity fields also set as {http.auth.user.<key>}.
var userFields = [...]struct {
	field       int
	placeholder string
}{
	{fieldAgent, "http.auth.user.agent"},
	{fieldSub, "http.auth.user.sub"},
	{fieldScope, "http.auth.user.scope"},
	{fieldLevel, "http.auth.user.level"},
	{fieldDelegate, "http.auth.user.delegate"},
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
	if identityPrefixed(name) {
		return true
	}
	for _, r := range renamed {
		if strings.EqualFold(name, r) || underscoreSpelling(name, r) {
			return true
		}
	}
	return false
}

// underscoreSpelling reports whether name is the header name r with every "-" written
// "_", in any case (strings.EqualFold(name, strings.ReplaceAll(r, "-", "_")) for the
// ASCII names header fields have, without building the string).
func underscoreSpelling(name, r string) bool {
	if len(name) != len(r) {
		return false
	}
	for i := 0; i < len(r); i++ {
		c, d := name[i], r[i]
		if d == '-' {
			d = '_'
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// stripIdentityHeaders removes every client-sent X-Aauth-* header, in either the dash or
// the underscore spelling (CGI backends treat them alike), plus any renamed field in
// either spelling, whatever the case of the map key.
func stripIdentityHeaders(h http.Header, renamed []string) {
	for name := range h {
		if isIdentityHeaderName(name, renamed) {
			delete(h, name)
		}
	}
}

// identityPrefixed reports whether name is X-Aauth-*, in any case and in either the dash
// or the underscore spelling (CGI backends treat them alike), without lowercasing a
// copy: header names are ASCII tokens.
func identityPrefixed(name string) bool {
	const prefix = "x-aauth-"
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c == '_' && prefix[i] == '-' {
			continue
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// identity holds the verified facts of a request, indexed like identityFields.
type identity [len(identityFields)]string

// identityValues lists the verified facts of a request.
func identityValues(res *reqverify.Result) identity {
	var v identity
	v[fieldLevel], v[fieldScheme], v[fieldAgent], v[fieldJKT] = res.Level, res.Scheme, res.Agent, res.Key.Thumbprint
	v[fieldDelegate] = res.Delegate
	if t := res.Token; t != nil && res.Level == reqverify.LevelAuthorized {
		v[fieldSub], v[fieldScope], v[fieldTxn], v[fieldIssuer] = t.Claims.Subject, t.Claims.Scope, t.Claims.Txn, t.Claims.Issuer
	}
	return v
}

// principal is the field {http.auth.user.id} carries: the user, else the agent, else
// the key (whose thumbprint a verified request always has).
func principal(v *identity) int {
	for _, i := range []int{fieldSub, fieldAgent} {
		if v[i] != "" {
			return i
		}
	}
	return fieldJKT
}

// setIdentity writes the verified facts into the upstream headers and placeholders.
func (h *Handler) setIdentity(r *http.Request, repl *caddy.Replacer, res *reqverify.Result) {
	vals := identityValues(res)
	backing := vals // one backing array for every header value (Header.Set makes one slice each)
	for i, f := range identityFields {
		if vals[i] == "" {
			continue
		}
		name := f.header // canonical already (TestIdentityHeadersCanonical)
		if alt, ok := h.Headers[f.key]; ok {
			if alt == "" || alt == "-" {
				continue
			}
			name = textproto.CanonicalMIMEHeaderKey(alt)
		}
		r.Header[name] = backing[i : i+1 : i+1]
	}
	// A request without a verdict gets a detached one: the provider still answers.
	verdictOf(r).placeholders.provide(repl, vals)
}

// verdictPlaceholders answers a request's {http.aauth.error*} placeholders (a refusal)
// or its verified identity's {http.aauth.*} and {http.auth.user.*} placeholders through
// one replacer provider (Replacer.Map), registered once per request, rather than a
// replacer map entry each: the first entry allocates the map's table, and with more
// entries every handler after (reverse_proxy sets a dozen) pays for a larger map.
type verdictPlaceholders struct {
	v          identity
	set        bool // v holds a verified identity
	code, desc string
	failed     bool // code and desc hold a refusal's error
	mapped     bool
}

func (p *verdictPlaceholders) mapOnce(repl *caddy.Replacer) {
	if !p.mapped {
		p.mapped = true
		repl.Map(p.get)
	}
}

// provide makes the placeholders answer from vals (a later verification of the same
// request replaces the earlier one's values, as Replacer.Set would).
func (p *verdictPlaceholders) provide(repl *caddy.Replacer, vals identity) {
	if !p.set {
		// Entries in the replacer's own map come before providers: take back one another
		// authentication handler of the request may have set, as Set would overwrite it.
		repl.Delete("http.auth.user.id")
	}
	p.v, p.set = vals, true
	p.mapOnce(repl)
}

// refuse makes {http.aauth.error} and {http.aauth.error_description} answer code and
// desc.
func (p *verdictPlaceholders) refuse(repl *caddy.Replacer, code, desc string) {
	if !p.failed {
		repl.Delete(decisionlog.PlaceholderError) // as in provide: Set would overwrite them
		repl.Delete(decisionlog.PlaceholderDescription)
	}
	p.code, p.desc, p.failed = code, desc, true
	p.mapOnce(repl)
}

func (p *verdictPlaceholders) get(key string) (any, bool) {
	switch {
	case key == decisionlog.PlaceholderError:
		return p.code, p.failed
	case key == decisionlog.PlaceholderDescription:
		return p.desc, p.failed
	case !p.set:
	case strings.HasPrefix(key, "http.aauth."):
		for i, f := range identityFields {
			if f.placeholder == key {
				return p.v[i], true
			}
		}
	case key == "http.auth.user.id":
		return p.v[principal(&p.v)], true
	case strings.HasPrefix(key, "http.auth.user."):
		for _, u := range userFields {
			if u.placeholder == key && p.v[u.field] != "" {
				return p.v[u.field], true
			}
		}
	}
	return nil, false
}
