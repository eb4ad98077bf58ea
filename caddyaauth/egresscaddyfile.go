package caddyaauth

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("aauth_egress", parseEgress)
	// A terminal proxy, ordered like reverse_proxy.
	httpcaddyfile.RegisterDirectiveOrder("aauth_egress", httpcaddyfile.After, "reverse_proxy")
}

func parseEgress(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	e := new(Egress)
	return e, e.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the egress from Caddyfile tokens. Syntax:
//
//	aauth_egress [<matcher>] {
//		allow         <origin>...                 # repeatable; default any public origin
//		exchange_form signature_key|body          # default signature_key
//		handle_header <X-Header-Name>             # default X-Aauth-Handle
//		max_body      <size>                      # default 10MiB
//		timeout       <duration>                  # default 30s
//	}
func (e *Egress) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return UnmarshalBlock(d, map[string]bool{"allow": true}, func(opt string) error {
		switch opt {
		case "allow":
			return appendArgs(d, &e.Allow)
		case "exchange_form":
			return oneArg(d, &e.ExchangeForm)
		case "handle_header":
			return oneArg(d, &e.HandleHeader)
		case "max_body":
			return byteSize(d, "max_body", &e.MaxBody)
		case "timeout":
			return positiveDuration(d, &e.Timeout, func(v string, _ error) error {
				return d.Errf("timeout: invalid duration %q", v)
			})
		default:
			return d.Errf("unrecognized aauth_egress option %q", opt)
		}
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Egress)(nil)
