package egress

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// Errors of TargetPolicy.Resolve.
var (
	ErrNoTarget      = errors.New("egress: no target: send an absolute-form request (HTTP proxy) or the target header")
	ErrBadTarget     = errors.New("egress: the target must be an absolute http or https URL without user info or fragment")
	ErrNotAllowed    = errors.New("egress: the target's origin is not in the allow list")
	ErrBadAllowEntry = errors.New("egress: allow entries must be origins (scheme://host[:port])")
)

// TargetPolicy decides where a backend may call out to.
type TargetPolicy struct {
	// Allow lists the origins (scheme://host[:port]) the backend may call; empty means
	// any. An http:// origin listed here is called over http; any other http target is
	// upgraded to https unless Dev.
	Allow []string
	// Dev keeps http targets as they are (tests and local demos).
	Dev bool
}

// NormalizeOrigin checks an allow entry and returns it as agent.Origin spells origins.
func NormalizeOrigin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: %q", ErrBadAllowEntry, s)
	}
	return agent.Origin(u), nil
}

// Resolve returns the absolute URL the backend's request r is for: its absolute-form
// request-target (r used the egress as an HTTP proxy), else the header named
// targetHeader. http is upgraded to https unless Dev or the http origin is allowed
// explicitly; then the origin must be allowed.
func (p TargetPolicy) Resolve(r *http.Request, targetHeader string) (*url.URL, error) {
	var u *url.URL
	switch {
	case r.URL != nil && r.URL.IsAbs():
		cp := *r.URL
		u = &cp
	case r.Header.Get(targetHeader) != "":
		var err error
		if u, err = url.Parse(strings.TrimSpace(r.Header.Get(targetHeader))); err != nil {
			return nil, ErrBadTarget
		}
	default:
		return nil, ErrNoTarget
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, ErrBadTarget
	}
	if u.Scheme == "http" && !p.Dev && !p.allowed(agent.Origin(u)) {
		u.Scheme = "https"
		if u.Port() == "80" {
			u.Host = u.Hostname()
		}
	}
	if len(p.Allow) > 0 && !p.allowed(agent.Origin(u)) {
		return nil, ErrNotAllowed
	}
	return u, nil
}

func (p TargetPolicy) allowed(origin string) bool {
	return slices.ContainsFunc(p.Allow, func(a string) bool {
		n, err := NormalizeOrigin(a)
		return err == nil && n == origin
	})
}
