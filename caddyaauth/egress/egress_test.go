package egress

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestRegistry(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	reg := &Registry{Max: 2, Now: func() time.Time { return now }}
	a := &Handle{Inbound: "a", Expiry: now.Add(time.Minute)}
	b := &Handle{Inbound: "b", Expiry: now.Add(time.Hour)}
	if err := reg.Mint(a); err != nil || len(a.ID) != 22 {
		t.Fatalf("Mint: %v id %q", err, a.ID)
	}
	if err := reg.Mint(b); err != nil || a.ID == b.ID {
		t.Fatalf("Mint b: %v", err)
	}
	if err := reg.Mint(&Handle{}); !errors.Is(err, ErrTooMany) {
		t.Fatalf("third handle: %v", err)
	}
	if got, err := reg.Lookup(a.ID); err != nil || got != a {
		t.Fatalf("Lookup(a) = %v %v", got, err)
	}
	for _, bad := range []string{"", "not-a-handle", a.ID + "x", a.ID[:21] + "!"} {
		if _, err := reg.Lookup(bad); !errors.Is(err, ErrUnknownHandle) {
			t.Errorf("Lookup(%q) = %v", bad, err)
		}
	}
	now = now.Add(time.Minute) // a's inbound token expires now
	if _, err := reg.Lookup(a.ID); !errors.Is(err, ErrExpiredHandle) {
		t.Fatalf("expired: %v", err)
	}
	reg.Finish(b)
	if _, err := reg.Lookup(b.ID); !errors.Is(err, ErrUnknownHandle) {
		t.Fatalf("finished: %v", err)
	}
	a.Record(&Interaction{})
	first := a.Interaction()
	a.Record(&Interaction{})
	if a.Interaction() != first || first == nil {
		t.Fatal("Record must keep the first interaction")
	}
}

func TestTokenStore(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := &TokenStore{Max: 2, Now: func() time.Time { return now }}
	a := s.For("token-a", now.Add(time.Minute))
	if s.For("token-a", now.Add(time.Minute)) != a || s.For("token-b", now.Add(time.Hour)) == a {
		t.Fatal("one cache per inbound token")
	}
	s.For("token-c", now.Add(2*time.Hour)) // full: the first to expire (a) goes
	if s.Len() != 2 || s.For("token-a", now.Add(time.Minute)) == a {
		t.Fatalf("eviction: %d", s.Len())
	}
	now = now.Add(3 * time.Hour)
	s.For("token-d", now.Add(time.Hour))
	if s.Len() != 1 {
		t.Fatalf("expired caches not swept: %d", s.Len())
	}
}

func TestResolveTarget(t *testing.T) {
	abs := func(u string) *http.Request { return httptest.NewRequest("GET", u, nil) }
	hdr := func(u string) *http.Request {
		r := httptest.NewRequest("GET", "/x", nil)
		r.Header.Set("X-Aauth-Target", u)
		return r
	}
	tests := []struct {
		name   string
		policy TargetPolicy
		r      *http.Request
		want   string
		err    error
	}{
		{"absolute form", TargetPolicy{}, abs("https://api2.example/v1?q=1"), "https://api2.example/v1?q=1", nil},
		{"target header", TargetPolicy{}, hdr("https://api2.example/v1"), "https://api2.example/v1", nil},
		{"http upgraded to https", TargetPolicy{}, abs("http://api2.example/v1"), "https://api2.example/v1", nil},
		{"http:80 upgraded", TargetPolicy{}, hdr("http://api2.example:80/v1"), "https://api2.example/v1", nil},
		{"http kept in dev", TargetPolicy{Dev: true}, abs("http://127.0.0.1:9000/v1"), "http://127.0.0.1:9000/v1", nil},
		{"http origin allowed explicitly", TargetPolicy{Allow: []string{"http://api2.internal:8080"}}, hdr("http://api2.internal:8080/v1"), "http://api2.internal:8080/v1", nil},
		{"allowed after upgrade", TargetPolicy{Allow: []string{"https://api2.example"}}, abs("http://api2.example/v1"), "https://api2.example/v1", nil},
		{"not in allow list", TargetPolicy{Allow: []string{"https://api2.example"}}, abs("https://api3.example/v1"), "", ErrNotAllowed},
		{"no target", TargetPolicy{}, httptest.NewRequest("GET", "/x", nil), "", ErrNoTarget},
		{"ftp", TargetPolicy{}, hdr("ftp://api2.example/"), "", ErrBadTarget},
		{"user info", TargetPolicy{}, hdr("https://u:p@api2.example/"), "", ErrBadTarget},
		{"relative header", TargetPolicy{}, hdr("/v1"), "", ErrBadTarget},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := tc.policy.Resolve(tc.r, "X-Aauth-Target")
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err == nil && u.String() != tc.want {
				t.Fatalf("target %s, want %s", u, tc.want)
			}
		})
	}
	if _, err := NormalizeOrigin("https://api.example/path"); err == nil {
		t.Fatal("an allow entry with a path was accepted")
	}
}

func TestOutboundStripsFields(t *testing.T) {
	r := httptest.NewRequest("POST", "/x", nil)
	for k, v := range map[string]string{
		"X-Aauth-Handle": "h", "X-Aauth-Target": "t", "X-Aauth-Subject": "alice", "X_Aauth_Agent": "a",
		"Connection": "X-Private, keep-alive", "X-Private": "p", "Keep-Alive": "5", "Proxy-Authorization": "x",
		"Signature": "s", "Signature-Input": "i", "Signature-Key": "k",
		"Content-Type": "application/json", "Accept": "text/plain",
	} {
		r.Header[k] = []string{v}
	}
	u, _ := TargetPolicy{}.Resolve(httptest.NewRequest("GET", "https://api2.example/v1", nil), "")
	out, err := Outbound(t.Context(), r, u, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Header) != 2 || out.Header.Get("Content-Type") != "application/json" || out.Header.Get("Accept") != "text/plain" {
		t.Fatalf("forwarded %v", out.Header)
	}
	if out.Method != "POST" || out.URL.String() != "https://api2.example/v1" {
		t.Fatalf("%s %s", out.Method, out.URL)
	}
}
