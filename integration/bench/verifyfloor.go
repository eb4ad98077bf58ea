package main

import (
	"crypto/ed25519"
	"errors"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// verifyFloor is a handler that does one Ed25519 verification (RFC 8032 §5.1.7) of a
// fixed signature base-sized message and nothing else: a route of it in front of the
// plain route's reverse_proxy costs one verify inside Caddy, under the same load and
// with the same caches as the aauth routes. That is the floor of a signed request (every
// request carries a fresh signature), measured where the aauth routes run, beside the
// tight-loop testing.Benchmark of the same call.
type verifyFloor struct {
	pub      ed25519.PublicKey
	msg, sig []byte
}

const verifyFloorDirective = "aauth_bench_verify"

func init() {
	caddy.RegisterModule(verifyFloor{})
	httpcaddyfile.RegisterHandlerDirective(verifyFloorDirective, func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		var v verifyFloor
		return &v, v.UnmarshalCaddyfile(h.Dispenser)
	})
	// Where the aauth directive runs: before reverse_proxy.
	httpcaddyfile.RegisterDirectiveOrder(verifyFloorDirective, httpcaddyfile.Before, "reverse_proxy")
}

func (verifyFloor) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers." + verifyFloorDirective,
		New: func() caddy.Module { return new(verifyFloor) },
	}
}

func (v *verifyFloor) Provision(caddy.Context) error {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	v.pub, v.msg = pub, []byte(strings.Repeat("\"@method\": GET\n", 16)) // as verifyCost
	v.sig = ed25519.Sign(priv, v.msg)
	return nil
}

func (v *verifyFloor) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !ed25519.Verify(v.pub, v.msg, v.sig) {
		return caddyhttp.Error(http.StatusInternalServerError, errors.New("verify floor: the fixed signature did not verify"))
	}
	return next.ServeHTTP(w, r)
}

// UnmarshalCaddyfile takes the bare directive.
func (v *verifyFloor) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() || d.NextBlock(0) {
		return d.Err("aauth_bench_verify takes no arguments")
	}
	return nil
}

var (
	_ caddy.Provisioner           = (*verifyFloor)(nil)
	_ caddyhttp.MiddlewareHandler = (*verifyFloor)(nil)
	_ caddyfile.Unmarshaler       = (*verifyFloor)(nil)
)
