package caddyaauth

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
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
	chainWrongClients = 10000 // clients tracked at once; past it unknown clients are refused
)

// codeMisses counts unknown codes per client IP in fixed windows.
type codeMisses struct {
	mu sync.Mutex
	m  map[string]codeWindow
}

type codeWindow struct {
	start time.Time
	n     int
}

// blocked reports whether ip has used up its wrong codes in the current window.
func (c *codeMisses) blocked(ip string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.m[ip]
	if !ok {
		return len(c.m) >= chainWrongClients && !c.sweep(now)
	}
	return now.Sub(w.start) < chainWrongWindow && w.n >= chainWrongCodes
}

// miss records an unknown code from ip.
func (c *codeMisses) miss(ip string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]codeWindow{}
	}
	w := c.m[ip]
	if now.Sub(w.start) >= chainWrongWindow {
		w = codeWindow{start: now}
	}
	w.n++
	if _, ok := c.m[ip]; ok || len(c.m) < chainWrongClients || c.sweep(now) {
		c.m[ip] = w
	}
}

// sweep drops windows that ended; it reports whether there is room for a new client.
func (c *codeMisses) sweep(now time.Time) bool {
	for ip, w := range c.m {
		if now.Sub(w.start) >= chainWrongWindow {
			delete(c.m, ip)
		}
	}
	return len(c.m) < chainWrongClients
}

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
