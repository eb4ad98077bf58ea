package caddyaauth

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

func init() {
	caddy.RegisterModule(Egress{})
}

// HeaderTarget names the absolute URL of an egress call sent in origin-form.
const HeaderTarget = "X-Aauth-Target"

// Egress is the aauth_egress handler: the loopback-only outbound proxy through which a
// backend calls other AAuth resources on behalf of the request it serves. The backend
// names that request by the handle the aauth handler forwarded to it (X-Aauth-Handle),
// and the target either as an HTTP proxy request (absolute-form request-target, e.g.
// with HTTP_PROXY=http://127.0.0.1:PORT) or in X-Aauth-Target. The call is signed as the
// resource acting as an agent; the downstream resource's auth-token challenge is
// answered by exchanging the inbound auth token; the downstream answer is relayed.
type Egress struct {
	// Allow lists the origins (scheme://host[:port]) backends may call; empty means any
	// (public addresses only, outside dev). An http:// origin listed here is called over
	// http; other http targets are upgraded to https unless the aauth app is in dev mode.
	Allow []string `json:"allow,omitempty"`
	// ExchangeForm is how the token exchange is signed: "signature_key" (default: the
	// inbound auth token in Signature-Key, signed with the resource's agent key) or
	// "body" (signed as the resource, scheme jwks_uri; the token only in the body).
	ExchangeForm string `json:"exchange_form,omitempty"`
	// HandleHeader is the request header carrying the handle (default X-Aauth-Handle).
	HandleHeader string `json:"handle_header,omitempty"`
	// MaxBody caps the backend's request body, in bytes (default 10 MiB).
	MaxBody int64 `json:"max_body,omitempty"`
	// Timeout bounds connecting to a downstream server and waiting for its response
	// headers (default 30s).
	Timeout caddy.Duration `json:"timeout,omitempty"`

	logger *zap.Logger
	state  *egressState
	proxy  *egress.Proxy
	policy egress.TargetPolicy
}

// CaddyModule returns the Caddy module information.
func (Egress) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.aauth_egress", New: func() caddy.Module { return new(Egress) }}
}

// Provision builds the outbound client from the aauth app's settings.
func (e *Egress) Provision(ctx caddy.Context) error {
	e.logger = ctx.Logger()
	app, err := LoadApp(ctx)
	if err != nil {
		return err
	}
	if e.HandleHeader == "" {
		e.HandleHeader = HeaderHandle
	}
	if e.MaxBody == 0 {
		e.MaxBody = agent.DefaultMaxBody
	}
	e.state = app.egressState()
	e.policy = egress.TargetPolicy{Allow: e.Allow, Dev: app.Dev}
	e.proxy = &egress.Proxy{
		Base:         egress.NewTransport(app.Dev, time.Duration(e.Timeout)),
		Discovery:    app.Discovery(),
		Dev:          app.Dev,
		ExchangeForm: e.ExchangeForm,
		Tokens:       e.state.tokens,
	}
	return nil
}

// Validate checks the options.
func (e *Egress) Validate() error {
	for _, a := range e.Allow {
		if _, err := egress.NormalizeOrigin(a); err != nil {
			return fmt.Errorf("allow: %q is not an origin (scheme://host[:port])", a)
		}
	}
	switch e.ExchangeForm {
	case "", agent.ExchangeSignatureKey, agent.ExchangeBody:
	default:
		return fmt.Errorf("exchange_form: unknown form %q (want signature_key or body)", e.ExchangeForm)
	}
	if e.MaxBody < 0 || e.Timeout < 0 {
		return errors.New("max_body and timeout must not be negative")
	}
	return nil
}

// loopbackPeer reports whether the TCP peer (never a forwarded header) is on loopback.
func loopbackPeer(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// ServeHTTP checks the peer, the handle and the target, then makes the call. It is a
// terminal handler. Each call leaves one decision line (endpointLine): refusals at Info
// with their error code, relayed answers at Debug with the downstream status.
func (e *Egress) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	ln := newEndpointLine(e.logger, "aauth egress")
	if !loopbackPeer(r) {
		return ln.refuse(w, r, http.StatusForbidden, wire.Error{Code: egress.CodeForbidden, Description: "aauth_egress serves loopback clients only"})
	}
	hd, err := e.state.handles.Lookup(r.Header.Get(e.HandleHeader))
	if err != nil {
		return ln.refuse(w, r, http.StatusForbidden, wire.Error{Code: egress.CodeInvalidHandle, Description: err.Error()})
	}
	ln.add(zap.String("resource", hd.Resource), zap.String("jkt", hd.AgentJKT))
	if r.Method == http.MethodConnect {
		// A tunnel's bytes are TLS the egress cannot sign; the backend names the target
		// with an http:// URL instead and the egress calls it over https.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		return ln.refuse(w, r, http.StatusMethodNotAllowed, wire.Error{Code: egress.CodeInvalidTarget,
			Description: "aauth_egress cannot sign inside a CONNECT tunnel: request the http:// URL through the proxy; the egress upgrades it to https"})
	}
	target, err := e.policy.Resolve(r, HeaderTarget)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, egress.ErrNotAllowed) {
			status = http.StatusForbidden
		}
		return ln.refuse(w, r, status, wire.Error{Code: egress.CodeInvalidTarget, Description: err.Error()})
	}
	ln.add(zap.String("target", target.Redacted()))
	body, err := e.readBody(r)
	if err != nil {
		ln.log(r, http.StatusRequestEntityTooLarge, wire.CodeInvalidRequest, err.Error())
		return caddyhttp.Error(http.StatusRequestEntityTooLarge, err)
	}
	out, err := egress.Outbound(r.Context(), r, target, body)
	if err != nil {
		ln.log(r, http.StatusBadRequest, wire.CodeInvalidRequest, "")
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	resp, err := e.proxy.Do(hd, out)
	if err != nil {
		if c := e.logger.Check(zap.DebugLevel, "aauth egress call failed"); c != nil {
			c.Write(zap.String("target", target.Redacted()), zap.String("resource", hd.Resource), zap.Error(err))
		}
		status, we := egress.ErrorFor(err)
		ln.log(r, status, we.Code, we.Description)
		egress.WriteError(w, err)
		return nil
	}
	ln.log(r, resp.StatusCode, CodeOK, "")
	return egress.Relay(w, resp)
}

// readBody reads the backend's body within MaxBody; nil when there is none.
func (e *Egress) readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, e.MaxBody+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > e.MaxBody {
		return nil, fmt.Errorf("the request body exceeds %d bytes", e.MaxBody)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return b, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Egress)(nil)
	_ caddy.Validator             = (*Egress)(nil)
	_ caddyhttp.MiddlewareHandler = (*Egress)(nil)
)
