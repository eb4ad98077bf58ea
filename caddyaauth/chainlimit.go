package caddyaauth

import (
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Wrong-code limit of the chaining interact endpoint. Our code leads to the downstream
// auth server's code, so guessing ours must be as hard as guessing theirs: a client
// that sent chainWrongCodes unknown codes waits until its window ends (draft-hardt-aauth
// §20: interaction codes are rate limited).
const (
	chainWrongCodes   = 10
	chainWrongWindow  = time.Minute
	chainWrongClients = 10000 // clients tracked at once
)

// ClientIP is the request's client for rate limits: Caddy's client IP (which honours
// trusted_proxies), else the peer address; IPv6 clients are grouped by /64, since one
// host usually holds a whole /64.
func ClientIP(r *http.Request) string {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if s == "" {
		s = r.RemoteAddr
		if host, _, err := net.SplitHostPort(s); err == nil {
			s = host
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
