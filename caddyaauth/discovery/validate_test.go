package discovery

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestValidateIdentifier(t *testing.T) {
	long := "https://" + strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + ".com"
	tests := []struct {
		id      string
		prod    bool // accepted without dev
		dev     bool // accepted with dev
		blocked bool // the production refusal is ErrBlocked (else ErrInvalid)
	}{
		{id: "https://agent.example", prod: true, dev: true},
		{id: "https://a.b-c.example", prod: true, dev: true},
		{id: "https://xn--bcher-kva.example", prod: true, dev: true},
		{id: "https://8.8.8.8", prod: true, dev: true},
		{id: "https://[2606:4700::1111]", prod: true, dev: true},
		// scheme
		{id: "http://agent.example", dev: true},
		{id: "HTTPS://agent.example"},
		{id: "Https://agent.example"},
		{id: "file:///etc/passwd"},
		{id: "gopher://agent.example"},
		{id: "ftp://agent.example"},
		{id: "data:application/json,{}"},
		{id: "agent.example"},
		{id: "//agent.example"},
		{id: "https:agent.example"},
		{id: ""},
		// port
		{id: "https://agent.example:443", dev: true},
		{id: "https://agent.example:8443", dev: true},
		{id: "http://127.0.0.1:8001", dev: true, blocked: false},
		{id: "http://[::1]:8001", dev: true},
		{id: "https://agent.example:", dev: false},
		{id: "https://agent.example:0"},
		{id: "https://agent.example:08443"},
		{id: "https://agent.example:65536"},
		{id: "https://agent.example:+443"},
		{id: "https://agent.example:443:443"},
		// path, query, fragment, userinfo
		{id: "https://agent.example/"},
		{id: "https://agent.example/a"},
		{id: "https://agent.example/."},
		{id: "https://agent.example/../x"},
		{id: "https://agent.example?"},
		{id: "https://agent.example?x=1"},
		{id: "https://agent.example#"},
		{id: "https://agent.example#f"},
		{id: "https://user@agent.example"},
		{id: "https://user:pw@agent.example"},
		{id: "https://evil.example@agent.example"},
		{id: `https://agent.example\evil`},
		// case, dots, charset
		{id: "https://Agent.example"},
		{id: "https://AGENT.EXAMPLE"},
		{id: "https://XN--bcher-kva.example"},
		{id: "https://agent.example."},
		{id: "https://.agent.example"},
		{id: "https://agent..example"},
		{id: "https://-agent.example"},
		{id: "https://agent-.example"},
		{id: "https://agent_x.example"},
		{id: "https://bücher.example"},
		{id: "https://agent%2eexample"},
		{id: "https://agent.example%00"},
		{id: "https:// agent.example"},
		{id: "https://agent.example\n"},
		{id: "https://"},
		{id: long},
		{id: "https://" + strings.Repeat("a", 64) + ".example"},
		// loopback names
		{id: "https://localhost", dev: true, blocked: true},
		{id: "https://a.localhost", dev: true, blocked: true},
		{id: "http://localhost:8080", dev: true},
		// IP literals of blocked ranges: refused up front in production
		{id: "https://127.0.0.1", dev: true, blocked: true},
		{id: "https://10.1.2.3", dev: true, blocked: true},
		{id: "https://169.254.169.254", dev: true, blocked: true},
		{id: "https://100.64.0.1", dev: true, blocked: true},
		{id: "https://0.0.0.0", dev: true, blocked: true},
		{id: "https://255.255.255.255", dev: true, blocked: true},
		{id: "https://[::1]", dev: true, blocked: true},
		{id: "https://[::]", dev: true, blocked: true},
		{id: "https://[fe80::1]", dev: true, blocked: true},
		{id: "https://[fc00::1]", dev: true, blocked: true},
		{id: "https://[::ffff:127.0.0.1]"}, // IPv4-mapped: another spelling of an IPv4 origin
		{id: "https://[::ffff:8.8.8.8]"},
		{id: "https://[::ffff:7f00:1]"},
		{id: "https://[0:0:0:0:0:0:0:1]"},                           // non-canonical IPv6 spelling
		{id: "https://[64:ff9b::7f00:1]", dev: true, blocked: true}, // NAT64 of 127.0.0.1
		{id: "https://[FE80::1]"},
		{id: "https://[fe80::1%25eth0]"},
		{id: "https://[::1"},
		{id: "https://[::1]x"},
		// non-canonical IPv4 spellings: refused even in dev
		{id: "https://2130706433", blocked: true},
		{id: "https://0177.0.0.1", blocked: true},
		{id: "https://0x7f.1", blocked: true},
		{id: "https://0x7f000001", blocked: true},
		{id: "https://127.1", blocked: true},
		{id: "https://127.0.1", blocked: true},
		{id: "https://127.000.000.001", blocked: true},
		{id: "https://017700000001", blocked: true},
		{id: "https://1.2.3.4.5", blocked: true},
		{id: "https://a.0x10", blocked: true},
		{id: "https://agent.123", blocked: true},
		{id: "https://0x", blocked: true},
		{id: "https://0xagent.example", prod: true, dev: true}, // last label is not numeric
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			err := ValidateIdentifier(tt.id, false)
			if (err == nil) != tt.prod {
				t.Errorf("prod: got err=%v, want ok=%v", err, tt.prod)
			}
			if err != nil {
				wantBlocked := tt.blocked
				if gotBlocked := errors.Is(err, ErrBlocked); gotBlocked != wantBlocked {
					t.Errorf("prod: ErrBlocked=%v, want %v (%v)", gotBlocked, wantBlocked, err)
				}
				if !errors.Is(err, ErrBlocked) && !errors.Is(err, ErrInvalid) {
					t.Errorf("prod: error wraps no sentinel: %v", err)
				}
			}
			if err := ValidateIdentifier(tt.id, true); (err == nil) != tt.dev {
				t.Errorf("dev: got err=%v, want ok=%v", err, tt.dev)
			}
		})
	}
}

func TestValidateWellKnownName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"aauth-agent", true},
		{"aauth-agent.json", true},
		{"aauth-issuer.json", true},
		{"Custom_Doc-1.v2.json", true},
		{"...", true}, // a plain file name, not a dot segment
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{".", false},
		{"..", false},
		{"../secret", false},
		{"a/b", false},
		{"/etc/passwd", false},
		{"a%2fb", false},
		{"%2e%2e", false},
		{`a\b`, false},
		{"a b", false},
		{"a?x=1", false},
		{"a#f", false},
		{"a;b", false},
		{"ä", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		if err := ValidateWellKnownName(tt.name); (err == nil) != tt.ok {
			t.Errorf("%q: err=%v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestValidateEndpointURL(t *testing.T) {
	tests := []struct {
		u         string
		prod, dev bool
	}{
		{"https://agent.example/jwks.json", true, true},
		{"https://keys.other.example/a/b/jwks?v=2", true, true},
		{"https://agent.example", true, true},
		{"http://agent.example/jwks.json", false, true},
		{"http://127.0.0.1:8001/jwks.json", false, true},
		{"https://agent.example:8443/jwks.json", false, true},
		{"https://agent.example/jwks.json#x", false, false},
		{"https://agent.example/jwks.json#", false, false},
		{"https://u:p@agent.example/jwks.json", false, false},
		{"https://u@agent.example/jwks.json", false, false},
		{"https://agent.example/../jwks.json", false, false},
		{"https://agent.example/a/./jwks.json", false, false},
		{"https://agent.example/a/%2e%2e/jwks.json", false, false},
		{"https://agent.example/a%2fb", false, false},
		{"https://Agent.example/jwks.json", false, false},
		{"https://127.0.0.1/jwks.json", false, true},
		{"https://169.254.169.254/latest/meta-data", false, true},
		{"https://[::ffff:a9fe:a9fe]/x", false, false},
		{"https://2130706433/jwks.json", false, false},
		{"https://localhost/jwks.json", false, true},
		{"file:///etc/passwd", false, false},
		{"gopher://agent.example/", false, false},
		{"HTTPS://agent.example/jwks.json", false, false},
		{"https:///jwks.json", false, false},
		{"https://agent.example/jw ks", false, false},
		{"https://" + strings.Repeat("a", 2100), false, false},
	}
	for _, tt := range tests {
		if _, err := ValidateEndpointURL(tt.u, false); (err == nil) != tt.prod {
			t.Errorf("prod %q: err=%v, want ok=%v", tt.u, err, tt.prod)
		}
		if _, err := ValidateEndpointURL(tt.u, true); (err == nil) != tt.dev {
			t.Errorf("dev %q: err=%v, want ok=%v", tt.u, err, tt.dev)
		}
	}
}

func TestIsPublicAddr(t *testing.T) {
	tests := []struct {
		a    string
		want bool
	}{
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"93.184.216.34", true},
		{"2606:4700:4700::1111", true},
		{"2a00:1450:4001:81b::200e", true},
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::808:808", true}, // NAT64 of 8.8.8.8
		{"2002:808:808::1", true},  // 6to4 of 8.8.8.8
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"10.0.0.1", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"172.32.0.1", true},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"169.254.0.1", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"100.128.0.1", true},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"255.255.255.255", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"240.0.0.1", false},
		{"192.0.0.8", false},
		{"192.0.2.1", false},
		{"192.88.99.1", false},
		{"198.18.0.1", false},
		{"198.19.255.255", false},
		{"198.51.100.1", false},
		{"203.0.113.1", false},
		{"::", false},
		{"::1", false},
		{"::127.0.0.1", false}, // IPv4-compatible (deprecated)
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:0.0.0.0", false},
		{"::ffff:100.64.0.1", false},
		{"64:ff9b::7f00:1", false},    // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", false}, // NAT64 of 169.254.169.254
		{"64:ff9b:1::1", false},       // local-use NAT64
		{"2002:7f00:1::1", false},     // 6to4 of 127.0.0.1
		{"2002:c0a8:101::1", false},   // 6to4 of 192.168.1.1
		{"2001::1", false},            // Teredo
		{"2001:db8::1", false},
		{"3fff::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"fec0::1", false},
		{"ff02::1", false},
		{"ff05::1:3", false},
		{"100::1", false},
		{"5f00::1", false},
	}
	for _, tt := range tests {
		if got := IsPublicAddr(netip.MustParseAddr(tt.a)); got != tt.want {
			t.Errorf("IsPublicAddr(%s) = %v, want %v", tt.a, got, tt.want)
		}
	}
	if IsPublicAddr(netip.Addr{}) {
		t.Error("zero Addr must not be public")
	}
}

func FuzzValidateIdentifier(f *testing.F) {
	for _, s := range []string{
		"https://agent.example", "http://127.0.0.1:8001", "https://agent.example/", "https://[::1]",
		"https://2130706433", "https://0177.0.0.1", "https://0x7f.1", "https://127.1",
		"https://user@agent.example", "https://Agent.example", "https://agent.example.", "https://a:443",
		"https://[::ffff:127.0.0.1]", "https://xn--bcher-kva.example", "https://8.8.8.8", "file:///x",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, id string, dev bool) {
		err := ValidateIdentifier(id, dev)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrBlocked) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		// An accepted identifier is exactly an origin: it round-trips through net/url
		// with nothing but scheme and host, all lowercase.
		u, perr := url.Parse(id)
		if perr != nil {
			t.Fatalf("accepted %q but url.Parse fails: %v", id, perr)
		}
		if u.Scheme+"://"+u.Host != id || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
			t.Fatalf("accepted %q which is not a bare origin: %#v", id, u)
		}
		if strings.ToLower(id) != id {
			t.Fatalf("accepted non-lowercase %q", id)
		}
		if !dev {
			if u.Scheme != "https" || u.Port() != "" {
				t.Fatalf("production accepted %q", id)
			}
			if a, err := netip.ParseAddr(u.Hostname()); err == nil && !IsPublicAddr(a) {
				t.Fatalf("production accepted non-public literal %q", id)
			}
			if err := ValidateIdentifier(id, true); err != nil {
				t.Fatalf("production-valid %q rejected in dev: %v", id, err)
			}
		}
	})
}

func FuzzValidateWellKnownName(f *testing.F) {
	for _, s := range []string{"aauth-agent", "aauth-agent.json", ".", "..", "../x", "a/b", "%2f", "", "a\\b", strings.Repeat("x", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateWellKnownName(name) != nil {
			return
		}
		if name == "." || name == ".." || name == "" || len(name) > maxWellKnownLen {
			t.Fatalf("accepted %q", name)
		}
		// The name must stay one literal path segment under /.well-known/.
		u, err := url.Parse("https://a.example/.well-known/" + name)
		if err != nil || u.Path != "/.well-known/"+name || u.RawQuery != "" || u.Fragment != "" || url.PathEscape(name) != name {
			t.Fatalf("accepted %q which escapes /.well-known/", name)
		}
	})
}

func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":{"b":[1,{"c":null}]}}`, `[]`, `{"a":1} x`, `{`, strings.Repeat("[", 40)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		obj, err := decodeObject(b)
		if err == nil && obj == nil {
			t.Fatal("nil object without error")
		}
	})
}

// TestValidJWKSURIMemo: a jwks_uri that passes is validated once and then served from
// the memo; one that fails is refused every time, and the memo stays bounded.
func TestValidJWKSURIMemo(t *testing.T) {
	c := New(Config{})
	defer c.Close()
	u1, err := c.validJWKSURI("https://agent.example/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	if u2, err := c.validJWKSURI("https://agent.example/jwks.json"); err != nil || u2 != u1 {
		t.Fatalf("second lookup: %v, %v (want the memoised URL)", u2, err)
	}
	for range 2 {
		if _, err := c.validJWKSURI("http://agent.example/jwks.json"); err == nil {
			t.Fatal("plain http accepted outside dev")
		}
	}
	for i := range maxValidJWKSURIs + 10 {
		_, _ = c.validJWKSURI(fmt.Sprintf("https://a%d.example/jwks.json", i))
	}
	n := 0
	c.jwksURIs.Range(func(any, any) bool { n++; return true })
	if n > maxValidJWKSURIs {
		t.Fatalf("memo holds %d values, bound %d", n, maxValidJWKSURIs)
	}
}
