package discovery

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

const (
	maxIdentifierLen = 255 // "https://" plus a 253-byte host plus a dev port fits
	maxURLLen        = 2048
	maxWellKnownLen  = 64
	maxHostLen       = 253
)

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// ValidateIdentifier checks an agent, resource or issuer identifier (draft-hardt-aauth §5.1):
// an https origin compared by exact string; http and loopback hosts only in Dev mode, our
// choice for tests and local demos.
// Identifiers are compared by exact string, so only one spelling of each origin is
// accepted: https, lowercase scheme and host, no port, path (not even "/"), query,
// fragment, userinfo or trailing dot, and IP literals only in canonical form. Odd IPv4
// spellings (2130706433, 0177.0.0.1, 0x7f.1, 127.1) are refused outright because resolvers
// disagree on what they mean. Without dev, loopback/private IP literals and "localhost"
// are refused here, before any dial (ErrBlocked). With dev, http and a port are allowed
// and any host may be named.
func ValidateIdentifier(id string, dev bool) error {
	if len(id) > maxIdentifierLen {
		return invalid("identifier longer than %d bytes", maxIdentifierLen)
	}
	var rest string
	switch {
	case strings.HasPrefix(id, "https://"):
		rest = id[len("https://"):]
	case dev && strings.HasPrefix(id, "http://"):
		rest = id[len("http://"):]
	case dev:
		return invalid("identifier %q must start with https:// or http://", clip(id))
	default:
		return invalid("identifier %q must start with https://", clip(id))
	}
	if i := strings.IndexAny(rest, "/?#@\\"); i >= 0 {
		return invalid("identifier %q must be scheme and host only (found %q)", clip(id), rest[i])
	}
	return checkAuthority(rest, dev, "identifier")
}

// ValidateWellKnownName checks a document name taken from a Signature-Key `well-known`
// parameter before it is put after "/.well-known/": one path segment of [A-Za-z0-9._-],
// not "." or "..", at most 64 bytes. This keeps an attacker-chosen name from leaving
// /.well-known/ (no "/", no "%2f", no dot segments).
func ValidateWellKnownName(name string) error {
	if name == "" || len(name) > maxWellKnownLen {
		return invalid("well-known name must be 1 to %d bytes", maxWellKnownLen)
	}
	if name == "." || name == ".." {
		return invalid("well-known name may not be a dot segment")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return invalid("well-known name has a disallowed character at byte %d", i)
		}
	}
	return nil
}

// ValidateEndpointURL checks a URL found in a metadata document that this package will
// fetch (jwks_uri): https unless dev, no userinfo, fragment, dot segments or encoded
// slashes/dots in the path, and a host that passes the identifier host rules (so the
// second hop cannot name an internal address either). A query is allowed.
func ValidateEndpointURL(raw string, dev bool) (*url.URL, error) {
	if len(raw) > maxURLLen {
		return nil, invalid("URL longer than %d bytes", maxURLLen)
	}
	if !strings.HasPrefix(raw, "https://") && !(dev && strings.HasPrefix(raw, "http://")) {
		return nil, invalid("URL %q must use https", clip(raw))
	}
	if strings.ContainsAny(raw, "#\\ \t\r\n") {
		return nil, invalid("URL %q has a fragment or a disallowed character", clip(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, invalid("URL %q does not parse", clip(raw))
	}
	if u.User != nil || u.Opaque != "" {
		return nil, invalid("URL %q may not carry userinfo", clip(raw))
	}
	if err := checkAuthority(u.Host, dev, "URL"); err != nil {
		return nil, err
	}
	esc := strings.ToLower(u.EscapedPath())
	if strings.Contains(esc, "%2f") || strings.Contains(esc, "%2e") || strings.Contains(esc, "%5c") {
		return nil, invalid("URL %q has an encoded slash or dot in its path", clip(raw))
	}
	for seg := range strings.SplitSeq(u.Path, "/") {
		if seg == "." || seg == ".." {
			return nil, invalid("URL %q has a dot segment", clip(raw))
		}
	}
	return u, nil
}

// checkAuthority validates host[:port] with the identifier rules.
func checkAuthority(auth string, dev bool, what string) error {
	host, port := auth, ""
	if strings.HasPrefix(auth, "[") {
		end := strings.IndexByte(auth, ']')
		if end < 0 {
			return invalid("%s has an unterminated IPv6 literal", what)
		}
		host, port = auth[1:end], auth[end+1:]
		if port != "" && port[0] != ':' {
			return invalid("%s has junk after the IPv6 literal", what)
		}
		if port != "" {
			port = port[1:]
			if port == "" {
				return invalid("%s has an empty port", what)
			}
		}
		if err := checkPort(port, dev, what); err != nil {
			return err
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" || !canonicalIP(a, host) {
			// IPv4-mapped literals are refused too: they would be a second spelling of
			// an IPv4 origin, and identifiers are compared by exact string.
			return invalid("%s has a non-canonical IPv6 literal", what)
		}
		return checkIPLiteral(a, dev, what)
	}
	if i := strings.IndexByte(auth, ':'); i >= 0 {
		host, port = auth[:i], auth[i+1:]
		if port == "" {
			return invalid("%s has an empty port", what)
		}
		if err := checkPort(port, dev, what); err != nil {
			return err
		}
	}
	return checkHostname(host, dev, what)
}

func checkPort(port string, dev bool, what string) error {
	if port == "" {
		return nil
	}
	if !dev {
		return invalid("%s may not carry a port", what)
	}
	if len(port) > 5 || port[0] == '0' {
		return invalid("%s has an invalid port", what)
	}
	n := 0
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return invalid("%s has an invalid port", what)
		}
		n = n*10 + int(port[i]-'0')
	}
	if n < 1 || n > 65535 {
		return invalid("%s has an invalid port", what)
	}
	return nil
}

// checkHostname accepts lowercase LDH names (A-labels included) and canonical dotted-quad
// IPv4. A name whose last label is numeric or hex is an IPv4 spelling under the WHATWG URL
// rules and some resolvers, so it must be the canonical dotted quad or it is refused.
func checkHostname(host string, dev bool, what string) error {
	if host == "" {
		return invalid("%s has an empty host", what)
	}
	if len(host) > maxHostLen {
		return invalid("%s host is longer than %d bytes", what, maxHostLen)
	}
	if strings.HasSuffix(host, ".") {
		return invalid("%s host may not end with a dot", what)
	}
	last := ""
	for l := range strings.SplitSeq(host, ".") {
		last = l
		if l == "" || len(l) > 63 {
			return invalid("%s host has an empty or overlong label", what)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return invalid("%s host label may not start or end with '-'", what)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if c >= 'A' && c <= 'Z' {
				return invalid("%s host must be lowercase", what)
			}
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return invalid("%s host has a disallowed character (IDNs must be in A-label form)", what)
			}
		}
	}
	if looksNumeric(last) {
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is4() || !canonicalIP(a, host) {
			return fmt.Errorf("%w: %s host %q is a non-canonical IP address spelling", ErrBlocked, what, clip(host))
		}
		return checkIPLiteral(a, dev, what)
	}
	if !dev && (host == "localhost" || strings.HasSuffix(host, ".localhost")) {
		return fmt.Errorf("%w: %s host %q is loopback", ErrBlocked, what, host)
	}
	return nil
}

// looksNumeric reports whether a label would be read as a number by an IPv4 parser:
// all decimal digits, or 0x followed by hex digits.
func looksNumeric(l string) bool {
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		for i := 2; i < len(l); i++ {
			c := l[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

func checkIPLiteral(a netip.Addr, dev bool, what string) error {
	if !dev && !IsPublicAddr(a) {
		return fmt.Errorf("%w: %s names a non-public address %s", ErrBlocked, what, a)
	}
	return nil
}

// clip shortens attacker-supplied strings before they go into errors and logs.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// canonicalIP reports whether host is a's canonical text (RFC 5952 for IPv6), without
// allocating: identifiers are validated on every request that names one.
func canonicalIP(a netip.Addr, host string) bool {
	var buf [64]byte
	return string(a.AppendTo(buf[:0])) == host
}
