package authserver

import (
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("aauth_server", parseHandler)
	// Before respond: a site's catch-all respond/file_server/reverse_proxy runs after the
	// auth server has had its paths.
	httpcaddyfile.RegisterDirectiveOrder("aauth_server", httpcaddyfile.Before, "respond")
}

func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	aauth_server [<matcher>] {
//		issuer            <https identifier>        # required
//		token_lifetime    <duration>                # default 1h
//		allow_long_tokens [true|false]              # permit token_lifetime over 1h
//		require_signed_body [true|false]            # POST bodies must be covered by content-digest
//		signature_window  <duration>                # default 60s
//		trust_issuer      <https identifier>...     # repeatable; upstream auth servers for token exchange
//		max_exchange_depth <n>                      # token exchanges in one call chain, default 3 (1-16)
//		refresh_window    <duration> | off          # refresh up to this long after expiry, default 24h (at most 30d)
//		policy {
//			<allow|consent|deny> [agent <id|*>...] [resource <id|*>...] [scope <scope>...]
//			default <allow|consent|deny>            # default deny
//		}
//		pending_lifetime  <duration>                # consent: time to decide, default 10m (10s-24h)
//		max_poll_wait     <duration>                # cap of Prefer: wait=N, default 30s (0-5m)
//		remember_for      <duration>                # "remember this decision", default 30d (0-366d)
//		user      <name> <bcrypt hash>              # repeatable; from `caddy hash-password`
//		user_from <placeholder>                     # or: the user from an auth handler,
//		                                            # e.g. {http.auth.user.id}
//		token_rate_limit <requests> <window> | off  # per agent, default 60 1m
//		key_rotation      <duration>                # rotate the signing key this often
//		key_publish_delay <duration>                # a new key's JWKS time before it signs, default 10m
//	}
//
// A policy that can answer consent needs users: either built-in users (user) or
// user_from, not both. Users are kept in the order written. max_poll_wait must stay below
// the server's write_timeout, if one is set, or long polls are cut off.
//
// Each of agent, resource and scope may appear at most once per rule and needs at least
// one value; a rule with no conditions matches every request. Values cannot be the words
// agent, resource or scope. See Policy for how rules are evaluated.
//
// The parser only reads the syntax; every value is checked in Validate, when the config
// is loaded (as for a JSON config).
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return caddyaauth.UnmarshalBlock(d, repeatableOptions, func(opt string) error { return h.unmarshalOption(d, opt) })
}

// repeatableOptions may appear more than once in an aauth_server block.
var repeatableOptions = map[string]bool{"trust_issuer": true, "user": true}

// unmarshalOption reads one option of the aauth_server block (the dispenser is on its
// name).
func (h *Handler) unmarshalOption(d *caddyfile.Dispenser, opt string) error {
	if field := h.durationField(opt); field != nil {
		dur, err := parseDuration(d)
		if err != nil {
			return err
		}
		*field = caddy.Duration(dur)
		return nil
	}
	switch opt {
	case "issuer":
		if !d.AllArgs(&h.Issuer) {
			return d.ArgErr()
		}
	case "allow_long_tokens":
		return parseFlag(d, &h.AllowLongTokens)
	case "require_signed_body":
		return parseFlag(d, &h.RequireSignedBody)
	case "allow_unsigned_body":
		return h.parseAllowUnsignedBody(d)
	case "trust_issuer":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		h.TrustIssuers = append(h.TrustIssuers, args...)
	case "max_exchange_depth":
		var v string
		if !d.AllArgs(&v) {
			return d.ArgErr()
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return d.Errf("max_exchange_depth: %q is not a whole number from 1 to %d", v, MaxExchangeDepthLimit)
		}
		h.MaxExchangeDepth = n
	case "refresh_window":
		return h.parseRefreshWindow(d)
	case "policy":
		if d.NextArg() {
			return d.ArgErr()
		}
		p, err := parsePolicy(d)
		if err != nil {
			return err
		}
		h.Policy = p
	case "user":
		var name, hash string
		if !d.AllArgs(&name, &hash) {
			return d.ArgErr()
		}
		h.Users = append(h.Users, User{Name: name, Hash: hash})
	case "user_from":
		if !d.AllArgs(&h.UserFrom) {
			return d.ArgErr()
		}
	case "token_rate_limit":
		rl, err := parseRateLimit(d)
		if err != nil {
			return err
		}
		h.TokenRateLimit = rl
	default:
		if ok, err := h.UnmarshalKeyOption(d, opt); ok {
			return err
		}
		return d.Errf("unrecognized aauth_server option %q", opt)
	}
	return nil
}

// durationField is the Handler field set by a Caddyfile option that takes one duration,
// or nil when opt is not such an option.
func (h *Handler) durationField(opt string) *caddy.Duration {
	switch opt {
	case "token_lifetime":
		return &h.TokenLifetime
	case "signature_window":
		return &h.SignatureWindow
	case "pending_lifetime":
		return &h.PendingLifetime
	case "max_poll_wait":
		return &h.MaxPollWait
	case "remember_for":
		return &h.RememberFor
	}
	return nil
}

// parseFlag reads a boolean option: the bare option means true, or one argument true or
// false.
func parseFlag(d *caddyfile.Dispenser, v *bool) error {
	opt := d.Val()
	*v = true
	if d.NextArg() {
		b, err := strconv.ParseBool(d.Val())
		if err != nil {
			return d.Errf("%s: %q is not true or false", opt, d.Val())
		}
		*v = b
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// parseAllowUnsignedBody reads the deprecated allow_unsigned_body option. An uncovered
// body is accepted by default now, so the bare or true form, which asks for the default,
// still loads (with a warning at provision); false asked for what require_signed_body now
// does, and silently dropping it would weaken the config.
func (h *Handler) parseAllowUnsignedBody(d *caddyfile.Dispenser) error {
	var v bool
	if err := parseFlag(d, &v); err != nil {
		return err
	}
	if !v {
		return d.Err("allow_unsigned_body is deprecated: uncovered bodies are accepted by default; use require_signed_body to demand a signed body")
	}
	h.AllowUnsignedBody = true
	return nil
}

// parseRefreshWindow reads `refresh_window <duration>` or `refresh_window off`.
func (h *Handler) parseRefreshWindow(d *caddyfile.Dispenser) error {
	var v string
	if !d.AllArgs(&v) {
		return d.ArgErr()
	}
	if v == "off" {
		h.RefreshOff, h.RefreshWindow = true, 0
		return nil
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return d.Errf("refresh_window: %q is not a positive duration or off", v)
	}
	h.RefreshWindow, h.RefreshOff = caddy.Duration(dur), false
	return nil
}

// parseDuration reads the single positive duration argument of the current option.
func parseDuration(d *caddyfile.Dispenser) (time.Duration, error) {
	opt := d.Val()
	var v string
	if !d.AllArgs(&v) {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s: invalid duration %q", opt, v)
	}
	if dur <= 0 {
		return 0, d.Errf("%s must be positive", opt)
	}
	return dur, nil
}

// parseRateLimit reads `<requests> <window>` or `off`.
func parseRateLimit(d *caddyfile.Dispenser) (*RateLimit, error) {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) > 0 && args[0] == "off" {
		if len(args) != 1 {
			return nil, d.Errf("%s: off takes no other arguments", opt)
		}
		return &RateLimit{Off: true}, nil
	}
	if len(args) != 2 {
		return nil, d.Errf("%s: want <requests> <window> (e.g. 60 1m) or off", opt)
	}
	// Zero would mean "the default" in JSON, so the Caddyfile takes positive values only;
	// the ranges are checked in Validate.
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return nil, d.Errf("%s: requests must be a whole number from 1 to %d, got %q", opt, maxTokenRateRequests, args[0])
	}
	win, err := caddy.ParseDuration(args[1])
	if err != nil || win <= 0 {
		return nil, d.Errf("%s: invalid window %q", opt, args[1])
	}
	return &RateLimit{Requests: n, Window: caddy.Duration(win)}, nil
}

// parsePolicy reads a policy block (the dispenser is on the `policy` token).
func parsePolicy(d *caddyfile.Dispenser) (*Policy, error) {
	p := &Policy{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		word := d.Val()
		switch word {
		case "default":
			if p.Default != "" {
				return nil, d.Err("policy default specified more than once")
			}
			var v string
			if !d.AllArgs(&v) {
				return nil, d.ArgErr()
			}
			p.Default = v
		case EffectAllow, EffectConsent, EffectDeny:
			r, err := parseRule(d, word)
			if err != nil {
				return nil, err
			}
			p.Rules = append(p.Rules, r)
		default:
			return nil, d.Errf("policy: unknown effect %q (want allow, consent, deny or default)", word)
		}
	}
	return p, nil
}

// parseRule reads the conditions after an effect: groups introduced by agent, resource or
// scope.
func parseRule(d *caddyfile.Dispenser, effect string) (Rule, error) {
	r := Rule{Effect: effect}
	var cur *[]string
	var group string
	closeGroup := func() error {
		if cur != nil && len(*cur) == 0 {
			return d.Errf("policy %s: %s needs at least one value", effect, group)
		}
		return nil
	}
	for d.NextArg() {
		v := d.Val()
		var next *[]string
		switch v {
		case "agent":
			next = &r.Agents
		case "resource":
			next = &r.Resources
		case "scope":
			next = &r.Scopes
		}
		if next != nil {
			if err := closeGroup(); err != nil {
				return r, err
			}
			if *next != nil {
				return r, d.Errf("policy %s: %s specified more than once in one rule", effect, v)
			}
			*next = []string{}
			cur, group = next, v
			continue
		}
		if cur == nil {
			return r, d.Errf("policy %s: expected agent, resource or scope, got %q", effect, v)
		}
		*cur = append(*cur, v)
	}
	if err := closeGroup(); err != nil {
		return r, err
	}
	return r, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
