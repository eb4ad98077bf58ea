package caddyaauth

import (
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
)

func TestSplitRequestURI(t *testing.T) {
	u, _ := url.Parse("http://h/abs%2Fpath?q=1")
	cases := []struct {
		uri         string
		path, query string
		hasQuery    bool
	}{
		{"/a/b", "/a/b", "", false},
		{"/a%2Fb?x=1&y", "/a%2Fb", "x=1&y", true},
		{"/a?", "/a", "", true},
		{"http://h/abs%2Fpath?q=1", "/abs%2Fpath", "q=1", true},
		{"", "/abs%2Fpath", "q=1", true},
	}
	for _, c := range cases {
		p, q, hq := splitRequestURI(c.uri, u)
		if p != c.path || q != c.query || hq != c.hasQuery {
			t.Errorf("%q: got (%q,%q,%v)", c.uri, p, q, hq)
		}
	}
}

func TestStripIdentityHeaders(t *testing.T) {
	h := http.Header{}
	for _, k := range []string{"X-Aauth-Agent", "X-AAUTH-LEVEL", "X_Aauth_Subject", "x-aauth_scope", "x_AaUtH-Txn", "X-Agent-Id", "X-Other",
		"X-Aauth", "X-Aauthx-Level", "X.Aauth-Level", "Y-Aauth-Level", "X_agent_id", "x-agent-id", "X-Agent_Id", "X-Agent-Idx"} {
		h[k] = []string{"forged"}
	}
	stripIdentityHeaders(h, []string{"X-Agent-Id"})
	// "X-Agent_Id" mixes the spellings: neither the name nor its underscore spelling.
	want := []string{"X-Other", "X-Aauth", "X-Aauthx-Level", "X.Aauth-Level", "Y-Aauth-Level", "X-Agent_Id", "X-Agent-Idx"}
	if len(h) != len(want) {
		t.Fatalf("left %v", h)
	}
	for _, k := range want {
		if h[k] == nil {
			t.Fatalf("%s removed: left %v", k, h)
		}
	}
}

func TestTargetUsesOriginalRequestAndAuthorities(t *testing.T) {
	h := &Handler{}
	h.authorities = []string{"api.example.com"}
	req := httptest.NewRequest("GET", "http://internal:8080/v1/items?x=1", nil)
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), httptest.NewRecorder(), nil)
	// A rewrite after the original request was recorded.
	req.URL.Path, req.URL.RawQuery, req.RequestURI = "/items", "", "/items"
	req.Method = "POST"
	tg := h.target(req)
	if tg.Method != "GET" || tg.Path != "/v1/items" || tg.Query != "x=1" || !tg.HasQuery {
		t.Fatalf("target %+v", tg)
	}
	if tg.Authority != "api.example.com" {
		t.Fatalf("authority %q", tg.Authority)
	}
	h.authorities = nil
	if tg := h.target(req); tg.Authority != "internal:8080" {
		t.Fatalf("authority %q", tg.Authority)
	}
}

func TestValidate(t *testing.T) {
	bad := []Handler{
		{Require: "auth"},
		{Require: "identity", SignatureWindow: -1},
		{Require: "identity", RequireComponents: []string{"content-length"}},
		{Require: "identity", Authorities: []string{"https://x"}},
		{Require: "identity", Resource: "https://api.example.com/"},
		{Require: "identity", Headers: map[string]string{"colour": "X-C"}},
		{Require: "identity", Headers: map[string]string{"agent": "Authorization"}},
	}
	for i, h := range bad {
		if err := h.Validate(); err == nil {
			t.Errorf("case %d: %+v validated", i, h)
		}
	}
	good := Handler{Require: "pseudonym", Resource: "https://api.example.com", Headers: map[string]string{"agent": "X-Agent", "jkt": "-"}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`aauth {
		require pseudonym
		signature_window 2m
		authority a.example b.example:8443
		header agent X-Agent
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.Require != "pseudonym" || len(h.Authorities) != 2 || h.Headers["agent"] != "X-Agent" || h.SignatureWindow != caddy.Duration(2*time.Minute) {
		t.Fatalf("%+v", h)
	}
}

// setIdentity writes the constant header names as they are: they must be canonical, or
// the upstream would get a second spelling beside a client's stripped one.
func TestIdentityHeadersCanonical(t *testing.T) {
	for _, f := range identityFields {
		if c := textproto.CanonicalMIMEHeaderKey(f.header); c != f.header {
			t.Errorf("%s: header %q is not canonical (%q)", f.key, f.header, c)
		}
	}
}

func TestSetIdentityHeaders(t *testing.T) {
	res := &reqverify.Result{Level: reqverify.LevelIdentity, Scheme: "jwks_uri", Agent: "https://agent.example",
		Key: &keys.PublicKey{Thumbprint: "jkt-value"}}
	cases := []struct {
		name    string
		renames map[string]string
		want    map[string]string // header → value; every other X-Aauth-* and renamed name absent
	}{
		{"defaults", nil, map[string]string{"X-Aauth-Level": "identity", "X-Aauth-Scheme": "jwks_uri",
			"X-Aauth-Agent": "https://agent.example", "X-Aauth-Key-Thumbprint": "jkt-value"}},
		{"renamed, any case", map[string]string{"agent": "x-agent-ID"}, map[string]string{"X-Aauth-Level": "identity",
			"X-Aauth-Scheme": "jwks_uri", "X-Agent-Id": "https://agent.example", "X-Aauth-Key-Thumbprint": "jkt-value"}},
		{"suppressed", map[string]string{"jkt": "-", "level": "-"}, map[string]string{"X-Aauth-Scheme": "jwks_uri",
			"X-Aauth-Agent": "https://agent.example"}},
		{"renaming an absent field sets nothing", map[string]string{"sub": "X-User"}, map[string]string{"X-Aauth-Level": "identity",
			"X-Aauth-Scheme": "jwks_uri", "X-Aauth-Agent": "https://agent.example", "X-Aauth-Key-Thumbprint": "jkt-value"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := &Handler{Headers: c.renames}
			r := httptest.NewRequest("GET", "http://api.example/", nil)
			h.setIdentity(r, caddy.NewReplacer(), res)
			if len(r.Header) != len(c.want) {
				t.Fatalf("headers %v, want %v", r.Header, c.want)
			}
			for k, v := range c.want {
				if got := r.Header[k]; len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got, v, r.Header)
				}
			}
		})
	}
}

// BenchmarkSetIdentity is the identity headers and placeholders of a verified auth-token
// request (six fields set).
func BenchmarkSetIdentity(b *testing.B) {
	res := &reqverify.Result{Level: reqverify.LevelIdentity, Scheme: "jwt", Agent: "https://agent.example",
		Key: &keys.PublicKey{Thumbprint: "jkt-value"}, Delegate: "d"}
	h := &Handler{}
	repl := caddy.NewReplacer()
	r := httptest.NewRequest("GET", "http://api.example/", nil)
	b.ReportAllocs()
	for b.Loop() {
		clear(r.Header)
		h.setIdentity(r, repl, res)
	}
}
