package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

func doRequest(t *testing.T, tr http.RoundTripper, method, url, body string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestTransportSignsEveryScheme(t *testing.T) {
	for _, scheme := range []string{httpsig.SchemeHWK, httpsig.SchemeJWKSURI, httpsig.SchemeJWT} {
		for _, dict := range []bool{false, true} {
			for _, std := range []bool{false, true} {
				for _, tc := range []struct {
					name, method, path, body string
					signBody                 bool
				}{
					{"get", "GET", "/data", "", false},
					{"get-query", "GET", "/data?a=1&b=%20x", "", false},
					{"post", "POST", "/items", `{"n":1}`, false},
					{"post-signed-body", "POST", "/items", `{"n":2}`, true},
				} {
					name := scheme + "/" + map[bool]string{false: "seed", true: "dict"}[dict] +
						"/" + map[bool]string{false: "b64url", true: "std"}[std] + "/" + tc.name
					t.Run(name, func(t *testing.T) {
						var extra []string
						if tc.signBody {
							extra = []string{"content-type", "content-digest"}
						}
						w := newWorld(t, RequirePseudonym, extra...)
						cred := w.cred(scheme)
						tr := &Transport{Dictionary: dict, StdBase64: std, SignBody: tc.signBody}
						if scheme == httpsig.SchemeHWK {
							tr.Pseudonym = cred
						} else {
							tr.Identity = cred
						}
						hdr := http.Header{}
						if tc.body != "" {
							hdr.Set("Content-Type", "application/json")
						}
						resp, got := doRequest(t, tr, tc.method, w.srv.URL+tc.path, tc.body, hdr)
						seen := w.res.requests()
						if resp.StatusCode != 200 {
							t.Fatalf("status %d, body %s, seen %+v", resp.StatusCode, got, seen)
						}
						if len(seen) != 1 {
							t.Fatalf("resource saw %d requests, want 1", len(seen))
						}
						s := seen[0]
						if s.Scheme != scheme || s.Legacy == dict || s.Body != tc.body {
							t.Errorf("seen %+v", s)
						}
						v := strings.TrimPrefix(s.SigValue, "sig=")
						isStd := strings.ContainsAny(v, "+/=")
						isURL := strings.ContainsAny(v, "-_")
						if (std && isURL) || (!std && isStd) {
							t.Errorf("signature alphabet: std=%v value %s", std, s.SigValue)
						}
						wantDigest := tc.signBody
						if covers(s.Covers, "content-digest") != wantDigest || covers(s.Covers, "content-type") != wantDigest {
							t.Errorf("covered components %v (signBody=%v)", s.Covers, tc.signBody)
						}
					})
				}
			}
		}
	}
}

func covers(list []string, c string) bool {
	for _, x := range list {
		if x == c {
			return true
		}
	}
	return false
}

func TestTransportStepUpToIdentity(t *testing.T) {
	for _, identity := range []string{httpsig.SchemeJWKSURI, httpsig.SchemeJWT} {
		for _, method := range []string{"GET", "POST"} {
			t.Run(identity+"/"+method, func(t *testing.T) {
				w := newWorld(t, RequireIdentity)
				var logs []string
				var mu sync.Mutex
				tr := &Transport{
					Pseudonym:       HWK(genKey(t, keys.AlgEd25519, "")),
					Identity:        w.cred(identity),
					PreferPseudonym: true,
					Logf: func(f string, a ...any) {
						mu.Lock()
						logs = append(logs, f)
						mu.Unlock()
					},
				}
				body := ""
				if method == "POST" {
					body = `{"order":"42","note":"same bytes twice"}`
				}
				resp, got := doRequest(t, tr, method, w.srv.URL+"/data-jwks", body, nil)
				seen := w.res.requests()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d (%s), seen %+v", resp.StatusCode, got, seen)
				}
				if len(seen) != 2 {
					t.Fatalf("resource saw %d requests, want 2", len(seen))
				}
				if seen[0].Scheme != httpsig.SchemeHWK || seen[1].Scheme != identity {
					t.Errorf("schemes %q then %q", seen[0].Scheme, seen[1].Scheme)
				}
				if seen[0].Body != body || seen[1].Body != body {
					t.Errorf("bodies %q and %q, want %q both times", seen[0].Body, seen[1].Body, body)
				}
				var out map[string]string
				_ = json.Unmarshal([]byte(got), &out)
				if out["scheme"] != identity {
					t.Errorf("final answer %s", got)
				}
				if len(logs) < 3 {
					t.Errorf("expected step logs, got %q", logs)
				}
			})
		}
	}
}

func TestTransportNeverLoops(t *testing.T) {
	w := newWorld(t, "never")
	tr := &Transport{Pseudonym: HWK(w.agentKey), Identity: w.cred(httpsig.SchemeJWKSURI), PreferPseudonym: true}
	resp, body := doRequest(t, tr, "POST", w.srv.URL+"/x", "payload", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !strings.Contains(body, "invalid_signature") {
		t.Errorf("the second 401's body should reach the caller, got %q", body)
	}
	if c, ok := ParseChallenge(resp.Header); !ok || c.Require != RequireIdentity {
		t.Errorf("challenge %+v %v", c, ok)
	}
	if n := len(w.res.requests()); n != 2 {
		t.Fatalf("resource saw %d requests, want exactly 2", n)
	}
}

// scripted answers each request with the next canned response and counts requests.
type scripted struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter)
	signed  []bool
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := len(s.signed)
	s.signed = append(s.signed, httpsig.Present(r.Header))
	s.mu.Unlock()
	if i < len(s.answers) {
		s.answers[i](w)
		return
	}
	w.WriteHeader(200)
}

func answer(status int, aauth string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if aauth != "" {
			w.Header()["AAuth"] = []string{aauth}
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, strings.Repeat("x", 100))
	}
}

func TestTransportRetryDecisions(t *testing.T) {
	key := genKey(t, keys.AlgEd25519, "k1")
	hwk, id := HWK(key), JWKSURI(key, "https://agent.example")
	tests := []struct {
		name        string
		tr          Transport
		first       func(http.ResponseWriter)
		wantSigned  []bool
		wantRetries bool
	}{
		{"identity after hwk", Transport{Pseudonym: hwk, Identity: id, PreferPseudonym: true},
			answer(401, "require=identity"), []bool{true, true}, true},
		{"identity but none configured", Transport{Pseudonym: hwk},
			answer(401, "require=identity"), []bool{true}, false},
		{"identity after identity", Transport{Pseudonym: hwk, Identity: id},
			answer(401, "require=identity"), []bool{true}, false},
		{"pseudonym after signed", Transport{Pseudonym: hwk},
			answer(401, "require=pseudonym"), []bool{true}, false},
		{"pseudonym after unsigned (lazy)", Transport{Pseudonym: hwk, Lazy: true},
			answer(401, "require=pseudonym"), []bool{false, true}, true},
		{"pseudonym, lazy, identity only", Transport{Identity: id, Lazy: true},
			answer(401, "require=pseudonym"), []bool{false, true}, true},
		{"identity after unsigned (lazy)", Transport{Pseudonym: hwk, Identity: id, Lazy: true},
			answer(401, "require=identity"), []bool{false, true}, true},
		{"no credentials at all", Transport{},
			answer(401, "require=pseudonym"), []bool{false}, false},
		{"auth-token is the caller's business when manual", Transport{Pseudonym: hwk, Identity: id, ManualAuthToken: true},
			answer(401, `require=auth-token; resource-token="r"; auth-server="https://as.example"`), []bool{true}, false},
		{"auth-token without an identity is returned", Transport{Pseudonym: hwk},
			answer(401, `require=auth-token; resource-token="r"; auth-server="https://as.example"`), []bool{true}, false},
		{"auth-token after hwk steps up to identity first", Transport{Pseudonym: hwk, Identity: id, PreferPseudonym: true},
			answer(401, `require=auth-token; resource-token="r"; auth-server="https://as.example"`), []bool{true, true}, true},
		{"auth-token without parameters is returned", Transport{Pseudonym: hwk, Identity: id},
			answer(401, `require=auth-token`), []bool{true}, false},
		{"401 without AAuth", Transport{Pseudonym: hwk, Identity: id, PreferPseudonym: true},
			answer(401, ""), []bool{true}, false},
		{"malformed AAuth", Transport{Pseudonym: hwk, Identity: id, PreferPseudonym: true},
			answer(401, "require=(identity"), []bool{true}, false},
		{"403 with AAuth", Transport{Pseudonym: hwk, Identity: id, PreferPseudonym: true},
			answer(403, "require=identity"), []bool{true}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &scripted{answers: []func(http.ResponseWriter){tc.first}}
			srv := httptest.NewServer(s)
			defer srv.Close()
			tr := tc.tr
			resp, _ := doRequest(t, &tr, "GET", srv.URL+"/r", "", nil)
			if !reflect.DeepEqual(s.signed, tc.wantSigned) {
				t.Errorf("signed per request %v, want %v", s.signed, tc.wantSigned)
			}
			if tc.wantRetries && resp.StatusCode != 200 {
				t.Errorf("status after retry %d", resp.StatusCode)
			}
		})
	}
}

func TestTransportDoesNotMutateRequest(t *testing.T) {
	w := newWorld(t, RequireIdentity)
	tr := &Transport{Pseudonym: HWK(w.agentKey), Identity: w.cred(httpsig.SchemeJWKSURI),
		PreferPseudonym: true, SignBody: true}
	body := []byte(`{"a":1}`)
	req, err := http.NewRequest("POST", w.srv.URL+"/p?q=1", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Custom", "v")
	wantHeader := req.Header.Clone()
	wantURL := *req.URL
	wantHost, wantCL := req.Host, req.ContentLength
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !reflect.DeepEqual(req.Header, wantHeader) {
		t.Errorf("caller's header changed: %v", req.Header)
	}
	if *req.URL != wantURL || req.Host != wantHost || req.ContentLength != wantCL {
		t.Errorf("caller's request changed: %v %q %d", req.URL, req.Host, req.ContentLength)
	}
}

func TestTransportSignsExplicitHost(t *testing.T) {
	w := newWorld(t, RequirePseudonym)
	tr := &Transport{Pseudonym: HWK(w.agentKey)}
	req, _ := http.NewRequest("GET", w.srv.URL+"/h", nil)
	req.Host = "api.example:8443"
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, seen %+v", resp.StatusCode, w.res.requests())
	}
}

func TestTransportErrors(t *testing.T) {
	key := genKey(t, keys.AlgEd25519, "k1")
	nokid := genKey(t, keys.AlgEd25519, "")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("no request should be sent")
	}))
	defer srv.Close()
	tests := []struct {
		name string
		tr   Transport
		body string
		want string
	}{
		{"body too large", Transport{Pseudonym: HWK(key), MaxBody: 4}, "12345", "exceeds"},
		{"identity is hwk", Transport{Identity: HWK(key)}, "", "Identity must be"},
		{"pseudonym is jwks_uri", Transport{Pseudonym: JWKSURI(key, "https://a.example")}, "", "Pseudonym must be"},
		{"jwks_uri without kid", Transport{Identity: JWKSURI(nokid, "https://a.example")}, "", "kid"},
		{"jwks_uri without id", Transport{Identity: JWKSURI(key, "")}, "", "agent id"},
		{"jwt without token", Transport{Identity: Delegate(key, "")}, "", "agent token"},
		{"no signer", Transport{Pseudonym: HWK(nil)}, "", "signing key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rd io.Reader
			if tc.body != "" {
				rd = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest("POST", srv.URL, rd)
			tr := tc.tr
			_, err := tr.RoundTrip(req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestTransportUsesClock(t *testing.T) {
	fixed := time.Unix(1774920963, 0)
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Signature-Input")
	}))
	defer srv.Close()
	tr := &Transport{Pseudonym: HWK(genKey(t, "", "")), Now: func() time.Time { return fixed }}
	doRequest(t, tr, "GET", srv.URL, "", nil)
	if !strings.HasSuffix(got, ";created=1774920963") {
		t.Errorf("Signature-Input %q", got)
	}
}

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   Challenge
		ok     bool
	}{
		{"absent", nil, Challenge{}, false},
		{"pseudonym", []string{"require=pseudonym"}, Challenge{Require: "pseudonym"}, true},
		{"identity", []string{"require=identity"}, Challenge{Require: "identity"}, true},
		{"auth-token", []string{`require=auth-token; resource-token="eyJ.a.b"; auth-server="https://as.example"`},
			Challenge{Require: "auth-token", ResourceToken: "eyJ.a.b", AuthServer: "https://as.example"}, true},
		{"auth-token no spaces", []string{`require=auth-token;auth-server="https://as.example";resource-token="t"`},
			Challenge{Require: "auth-token", ResourceToken: "t", AuthServer: "https://as.example"}, true},
		{"interaction", []string{`require=interaction; code="7R6XKPRP"`},
			Challenge{Require: "interaction", Code: "7R6XKPRP"}, true},
		{"approval", []string{"require=approval"}, Challenge{Require: "approval"}, true},
		{"unknown params ignored", []string{`require=identity; foo=1; bar`}, Challenge{Require: "identity"}, true},
		{"other members ignored", []string{`other=1, require=identity`}, Challenge{Require: "identity"}, true},
		{"split over lines", []string{`other=1`, `require=pseudonym`}, Challenge{Require: "pseudonym"}, true},
		{"empty", []string{""}, Challenge{}, false},
		{"no require", []string{"want=identity"}, Challenge{}, false},
		{"require is a string", []string{`require="identity"`}, Challenge{}, false},
		{"require is an integer", []string{`require=1`}, Challenge{}, false},
		{"require is boolean", []string{`require`}, Challenge{}, false},
		{"require is inner list", []string{`require=(identity)`}, Challenge{}, false},
		{"unterminated inner list", []string{`require=(identity`}, Challenge{}, false},
		{"token param not string", []string{`require=auth-token; resource-token=abc`}, Challenge{}, false},
		{"as param not string", []string{`require=auth-token; auth-server=1`}, Challenge{}, false},
		{"unterminated string", []string{`require=auth-token; auth-server="https://as`}, Challenge{}, false},
		{"old header syntax", []string{`httpsig; identity=?1`}, Challenge{}, false},
		{"garbage", []string{"require=identity;;"}, Challenge{}, false},
		{"non-ascii", []string{"require=idéntity"}, Challenge{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.values != nil {
				h["AAuth"] = tc.values
			}
			got, ok := ParseChallenge(h)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("got %+v %v, want %+v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	// The header name is case-insensitive: Go's canonical "Aauth" is read too.
	h := http.Header{}
	h.Set("aauth", "require=identity")
	if c, ok := ParseChallenge(h); !ok || c.Require != "identity" {
		t.Errorf("canonicalised name: %+v %v", c, ok)
	}
}

func pm(name, value string) httpsig.Param { return httpsig.Param{Name: name, Value: value} }

func TestCredentialSigKey(t *testing.T) {
	ed := genKey(t, keys.AlgEd25519, "key-1")
	ec := genKey(t, keys.AlgECDSAP256, "key-2")
	edm, ecm := ed.Public.Members(), ec.Public.Members()
	wk := JWKSURI(ed, "https://agent.example")
	wk.WellKnown = "aauth-agent.json"
	tests := []struct {
		name string
		c    *Credential
		want []httpsig.Param
	}{
		{"hwk ed25519", HWK(ed), []httpsig.Param{pm("kty", "OKP"), pm("crv", "Ed25519"), pm("x", edm["x"].(string))}},
		{"hwk p256", HWK(ec), []httpsig.Param{pm("kty", "EC"), pm("crv", "P-256"), pm("x", ecm["x"].(string)), pm("y", ecm["y"].(string))}},
		{"jwks_uri", JWKSURI(ed, "https://agent.example"), []httpsig.Param{pm("id", "https://agent.example"), pm("kid", "key-1")}},
		{"jwks_uri well-known", wk, []httpsig.Param{pm("id", "https://agent.example"), pm("well-known", "aauth-agent.json"), pm("kid", "key-1")}},
		{"jwt", Delegate(ec, "a.b.c"), []httpsig.Param{pm("jwt", "a.b.c")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.c.SigKey()
			if k.Scheme != tc.c.Scheme || !reflect.DeepEqual(k.Params, tc.want) {
				t.Fatalf("got %+v, want %v", k, tc.want)
			}
		})
	}
}

func TestCredentialStringHidesToken(t *testing.T) {
	w := newWorld(t, RequirePseudonym)
	s := w.cred(httpsig.SchemeJWT).String()
	if strings.Contains(s, w.agentToken) || strings.Contains(s, strings.Split(w.agentToken, ".")[1]) {
		t.Fatalf("String leaks the token: %s", s)
	}
	if !strings.Contains(s, "agent+jwt") || !strings.Contains(s, w.delegateKey.Public.Thumbprint) {
		t.Errorf("String should name the typ and the key thumbprint: %s", s)
	}
	if TokenType("not-a-token") != "" || TokenType("!!.x.y") != "" {
		t.Error("TokenType of garbage should be empty")
	}
}
