package caddyaauth

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/assertion"
)

func init() {
	httpcaddyfile.RegisterDirective("aauth", parseDirective)
	// After basic_auth: rate limiters and request_body caps run first, reverse_proxy and
	// request_header after us.
	httpcaddyfile.RegisterDirectiveOrder("aauth", httpcaddyfile.After, "basic_auth")
	httpcaddyfile.RegisterGlobalOption("aauth", parseGlobal)
	httpcaddyfile.RegisterHandlerDirective("aauth_strip", parseStrip)
	httpcaddyfile.RegisterDirectiveOrder("aauth_strip", httpcaddyfile.After, "basic_auth")
}

// parseStrip reads `aauth_strip [<header>...]`: needed only where aauth handlers sit in
// named routes or handle_errors alone; the headers are further names to remove.
func parseStrip(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h.Next()
	s := &Strip{Headers: h.RemainingArgs()}
	if h.NextBlock(0) {
		return nil, h.Err("aauth_strip takes no block")
	}
	for _, name := range s.Headers {
		if !strings.HasPrefix(strings.ToLower(name), "x-") {
			return nil, h.Errf("aauth_strip: header names must start with X- (got %q)", name)
		}
	}
	return s, nil
}

// parseDirective builds the handler's route. Stripping forged identity headers on the
// server's other paths and serving the well-known documents need no further routes: the
// handler puts a guard in front of its server's routes when it is provisioned.
func parseDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	var handler Handler
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return h.NewRoute(matcherSet, &handler), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	aauth [<matcher>] {
//		require           pseudonym|identity|auth-token
//		auth_server       <https identifier>          # auth-token routes
//		trust_issuer      <https identifier>...       # more accepted auth servers
//		scope             <scope>...                  # scopes the route requires
//		scope_description <scope> <text>              # published for consent screens
//		resource_token_lifetime <duration>            # default 5m
//		txn                                            # add a txn to resource tokens
//		resource          <https identifier>
//		signature_window  <duration>
//		authority         <host[:port]>...
//		require_components content-type|content-digest...
//		max_body          <size>
//		header            <field> <X-Header-Name|->
//		keep_signature_headers
//		log_passes                                    # decision lines of passes at Info
//		log_refusals      sampled|all                 # default sampled: first 100/s per code, then every 100th
//		replay            off|unsafe|all              # default unsafe on auth-token routes, else off
//		max_token_lifetime <duration>                 # agent and auth tokens; default 24h
//		agent_identity    [resource_key|own_key]      # the resource is an agent too
//		egress                                        # forward a handle for aauth_egress
//		header handle     <X-Header-Name>             # rename X-Aauth-Handle
//		key_rotation      <duration>                  # rotate the signing keys this often
//		key_publish_delay <duration>                  # a new key's JWKS time before it signs, default 10m
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return UnmarshalBlock(d, repeatable, func(opt string) error { return h.unmarshalOption(d, opt) })
}

// UnmarshalBlock reads a directive that takes no inline arguments and a block of options:
// each option is handed to option with the dispenser on its name; an option not in
// repeatable may appear only once. The aauth and aauth_server directives share it.
func UnmarshalBlock(d *caddyfile.Dispenser, repeatable map[string]bool, option func(opt string) error) error {
	d.Next() // directive name (the matcher, if any, was consumed by the caller)
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] && !repeatable[opt] {
			return d.Errf("%s specified more than once", opt)
		}
		seen[opt] = true
		if err := option(opt); err != nil {
			return err
		}
	}
	return nil
}

// unmarshalOption parses the arguments of one option of the aauth block.
func (h *Handler) unmarshalOption(d *caddyfile.Dispenser, opt string) error {
	switch opt {
	case "require":
		return oneArg(d, &h.Require)
	case "auth_server":
		return oneArg(d, &h.AuthServer)
	case "trust_issuer":
		return appendArgs(d, &h.TrustIssuers)
	case "scope":
		return appendArgs(d, &h.Scopes)
	case "scope_description":
		return addPair(d, &h.ScopeDescriptions, func(sc string) error {
			return d.Errf("scope_description for %q given twice", sc)
		})
	case "resource_token_lifetime":
		return positiveDuration(d, &h.ResourceTokenLifetime, func(v string, _ error) error {
			return d.Errf("resource_token_lifetime: want a duration between 1s and 1h, got %q", v)
		})
	case "txn":
		return flagOption(d, &h.Txn)
	case "resource":
		return oneArg(d, &h.Resource)
	case "signature_window":
		return positiveDuration(d, &h.SignatureWindow, func(_ string, err error) error {
			if err != nil {
				return d.Errf("signature_window: %v", err)
			}
			return d.Errf("signature_window must be positive")
		})
	case "authority":
		return appendArgs(d, &h.Authorities)
	case "require_components":
		return appendArgs(d, &h.RequireComponents)
	case "max_body":
		return byteSize(d, "max_body", &h.MaxBody)
	case "keep_signature_headers":
		return flagOption(d, &h.KeepSignatureHeaders)
	case "log_passes":
		return flagOption(d, &h.LogPasses)
	case "log_refusals":
		return h.parseLogRefusals(d)
	case "header":
		return addPair(d, &h.Headers, func(field string) error {
			return d.Errf("header %s specified more than once", field)
		})
	case "replay":
		return oneArg(d, &h.Replay)
	case "max_token_lifetime":
		return parseLifetime(d, &h.MaxTokenLifetime)
	case "agent_identity":
		h.AgentIdentity = AgentKeyResource
		if d.NextArg() {
			h.AgentIdentity = d.Val()
		}
		if d.NextArg() {
			return d.ArgErr()
		}
		if h.AgentIdentity != AgentKeyResource && h.AgentIdentity != AgentKeyOwn {
			return d.Errf("agent_identity: want resource_key or own_key, got %q", h.AgentIdentity)
		}
	case "egress":
		return flagOption(d, &h.Egress)
	case "upstream_assertion":
		h.UpstreamAssertion = assertion.DefaultHeader
		if d.NextArg() {
			h.UpstreamAssertion = d.Val()
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	case "assertion_audience":
		return oneArg(d, &h.AssertionAudience)
	default:
		if ok, err := h.UnmarshalKeyOption(d, opt); ok {
			return err
		}
		return d.Errf("unrecognized aauth option %q", opt)
	}
	return nil
}

// parseLogRefusals reads log_refusals' one argument, sampled or all.
func (h *Handler) parseLogRefusals(d *caddyfile.Dispenser) error {
	if err := oneArg(d, &h.LogRefusals); err != nil {
		return err
	}
	if err := validLogRefusals(h.LogRefusals); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// oneArg reads an option's single argument into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.AllArgs(dst) {
		return d.ArgErr()
	}
	return nil
}

// appendArgs appends an option's arguments, at least one, to dst.
func appendArgs(d *caddyfile.Dispenser, dst *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*dst = append(*dst, args...)
	return nil
}

// flagOption sets dst for an option that takes no arguments.
func flagOption(d *caddyfile.Dispenser, dst *bool) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	*dst = true
	return nil
}

// addPair reads an option's two arguments as a key and value into *m, creating the map
// on first use; a key given before fails with dup(key).
func addPair(d *caddyfile.Dispenser, m *map[string]string, dup func(key string) error) error {
	var key, value string
	if !d.AllArgs(&key, &value) {
		return d.ArgErr()
	}
	if *m == nil {
		*m = map[string]string{}
	}
	if _, ok := (*m)[key]; ok {
		return dup(key)
	}
	(*m)[key] = value
	return nil
}

// parseGlobal reads the `aauth` global option:
//
//	{
//		aauth {
//			dev
//			fetch_timeout <duration>
//			max_token_lifetime <duration>   # default for every aauth route; default 24h
//			replay_capacity <entries>       # replay store bound; default 1048576
//			replay_store local|shared       # default shared with a state backend, else local
//			state <backend> { … }           # e.g. state redis { address … }
//			ready_message <text>            # printed once the servers accept connections
//		}
//	}
//
// Repeated blocks merge into one app.
func parseGlobal(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if prev, ok := existing.(httpcaddyfile.App); ok {
		if err := unmarshalJSON(prev.Value, app); err != nil {
			return nil, err
		}
	}
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "dev":
			if d.NextArg() {
				v, err := strconv.ParseBool(d.Val())
				if err != nil {
					return nil, d.Errf("dev: %v", err)
				}
				app.Dev = v
			} else {
				app.Dev = true
			}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "fetch_timeout":
			if err := positiveDuration(d, &app.FetchTimeout, func(v string, _ error) error {
				return d.Errf("fetch_timeout: invalid duration %q", v)
			}); err != nil {
				return nil, err
			}
		case "max_token_lifetime":
			if err := parseLifetime(d, &app.MaxTokenLifetime); err != nil {
				return nil, err
			}
		case "replay_capacity":
			var v string
			if !d.AllArgs(&v) {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, d.Errf("replay_capacity: want a whole number of entries of at least %d, got %q", minReplayCapacity, v)
			}
			app.ReplayCapacity = n
		case "replay_store":
			if !d.AllArgs(&app.ReplayStore) {
				return nil, d.ArgErr()
			}
			if app.ReplayStore != ReplayStoreLocal && app.ReplayStore != ReplayStoreShared {
				return nil, d.Errf("replay_store: want local or shared, got %q", app.ReplayStore)
			}
		case "state":
			raw, err := parseState(d)
			if err != nil {
				return nil, err
			}
			app.StateRaw = raw
		case "ready_message":
			if !d.AllArgs(&app.ReadyMessage) {
				return nil, d.ArgErr()
			}
			if err := validateReadyMessage(app.ReadyMessage); err != nil {
				return nil, d.Err(err.Error())
			}
		default:
			return nil, d.Errf("unrecognized aauth global option %q", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "aauth", Value: caddyconfig.JSON(app, nil)}, nil
}

// parseState reads `state <backend> { … }`: the backend module aauth.state.<backend>
// parses its own block (e.g. `state redis { address … }`).
func parseState(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	name := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "aauth.state."+name)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, "backend", name, nil), nil
}

// parseLifetime reads the one argument of max_token_lifetime: a positive duration (zero
// would mean "unset"; the lower bound is checked in Validate).
func parseLifetime(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	return positiveDuration(d, dst, func(v string, _ error) error {
		return d.Errf("max_token_lifetime: want a duration of at least 1s, got %q", v)
	})
}

// positiveDuration reads an option's one argument as a positive duration into dst. An
// argument that is not one fails with bad(v, err), err being nil when v parsed but is not
// positive.
func positiveDuration(d *caddyfile.Dispenser, dst *caddy.Duration, bad func(v string, err error) error) error {
	var v string
	if !d.AllArgs(&v) {
		return d.ArgErr()
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return bad(v, err)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// Options that may appear more than once in a block.
var repeatable = map[string]bool{"authority": true, "header": true, "require_components": true, "trust_issuer": true, "scope": true, "scope_description": true}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)

// byteSize reads one positive size argument ("1MiB", "512KB", "4096") into dst.
func byteSize(d *caddyfile.Dispenser, opt string, dst *int64) error {
	var v string
	if !d.AllArgs(&v) {
		return d.ArgErr()
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > math.MaxInt64 {
		return d.Errf("%s: invalid size %q", opt, v)
	}
	*dst = int64(n)
	return nil
}
