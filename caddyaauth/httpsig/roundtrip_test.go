package httpsig

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// overTheWire serialises req as HTTP/1.1 and reads it back as a server would, returning
// the received request and the Target a verifier builds from it.
func overTheWire(t testing.TB, req *http.Request) (*http.Request, Target) {
	t.Helper()
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return readRaw(t, buf.String())
}

func readRaw(t testing.TB, raw string) (*http.Request, Target) {
	t.Helper()
	got, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return got, Target{
		Method:    got.Method,
		Authority: Authority("https", got.Host),
		Path:      got.URL.EscapedPath(),
		Query:     got.URL.RawQuery,
		HasQuery:  got.URL.RawQuery != "" || got.URL.ForceQuery,
		Header:    got.Header,
	}
}

// Sign → (wire) → Parse → Check → Base → Verify, for both algorithms, both Signature-Key
// syntaxes, both base64 alphabets, with and without a query, with and without
// content-type/content-digest coverage.
func TestSignRoundTrip(t *testing.T) {
	now := time.Unix(1774920963, 0)
	body := []byte(`{"resource_token":"eyJ..."}`)
	for _, alg := range []string{keys.AlgEd25519, keys.AlgECDSAP256} {
		signer, err := keys.Generate(alg, "k1")
		if err != nil {
			t.Fatal(err)
		}
		for _, dict := range []bool{false, true} {
			for _, std := range []bool{false, true} {
				for _, query := range []string{"", "?", "?b=2&a=%2F+x"} {
					for _, extra := range []bool{false, true} {
						name := fmt.Sprintf("%s/dict=%v/std=%v/query=%q/extra=%v", alg, dict, std, query, extra)
						t.Run(name, func(t *testing.T) {
							method, url := "GET", "https://Resource.Example:443/a/b%2Fc"+query
							var opts SignOptions
							var pol Policy
							if extra {
								method = "POST"
								opts.Extra = []string{"content-type", "content-digest"}
								pol.Extra = opts.Extra
							}
							req, err := http.NewRequest(method, url, nil)
							if err != nil {
								t.Fatal(err)
							}
							if extra {
								req.Header.Set("Content-Type", "application/json")
								SetContentDigest(req, body)
							}
							opts.Created, opts.Dictionary, opts.StdBase64 = now, dict, std
							if err := Sign(req, signer, hwkKey(signer), opts); err != nil {
								t.Fatal(err)
							}
							// The signer's own view verifies.
							checkSigned(t, req.Header, TargetOf(req), pol, now, signer, dict, std, extra, body)
							// And so does the server's view after the wire.
							got, tg := overTheWire(t, req)
							if tg.Authority != "resource.example" || tg.Path != "/a/b%2Fc" || tg.HasQuery != (query != "") {
								t.Fatalf("received target %+v", tg)
							}
							var rbody []byte
							if extra {
								rbody, _ = io.ReadAll(got.Body)
							}
							checkSigned(t, got.Header, tg, pol, now, signer, dict, std, extra, rbody)

							// Any change to the request fails.
							for what, mut := range map[string]func(*Target){
								"method":    func(x *Target) { x.Method = "PUT" },
								"authority": func(x *Target) { x.Authority = "resource.example:8443" },
								"path":      func(x *Target) { x.Path = "/a/b/c" },
							} {
								x := tg
								mut(&x)
								sig, _ := Parse(got.Header, DefaultLimits)
								base, _ := Base(sig, x)
								if Verify(sig, base, signer.Public) == nil {
									t.Errorf("%s changed: still verifies", what)
								}
							}
							if query != "" {
								x := tg
								x.Query = "b=2&a=%2f+x"
								sig, _ := Parse(got.Header, DefaultLimits)
								base, _ := Base(sig, x)
								if Verify(sig, base, signer.Public) == nil {
									t.Error("query changed: still verifies")
								}
							}
						})
					}
				}
			}
		}
	}
}

func checkSigned(t *testing.T, h http.Header, tg Target, pol Policy, now time.Time, signer *keys.Signer, dict, std, extra bool, body []byte) {
	t.Helper()
	sig, err := Parse(h, DefaultLimits)
	if err != nil {
		t.Fatalf("parse: %v\n%v", err, h)
	}
	if sig.Label != "sig" || sig.Key.Legacy == dict || sig.Key.Scheme != SchemeHWK || sig.Components[len(sig.Components)-1] != "signature-key" {
		t.Fatalf("parsed %+v", sig)
	}
	raw := h.Get(HeaderSignature)
	enc := raw[len("sig=:") : len(raw)-1]
	if std {
		if _, err := base64.StdEncoding.Strict().DecodeString(enc); err != nil {
			t.Fatalf("not standard base64: %s", raw)
		}
	} else if _, err := base64.RawURLEncoding.Strict().DecodeString(enc); err != nil {
		t.Fatalf("not unpadded base64url: %s", raw)
	}
	if err := pol.Check(sig, tg, now); err != nil {
		t.Fatalf("check: %v", err)
	}
	pub, err := keys.FromMembers(sig.Key.Map())
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(signer.Public) {
		t.Fatal("the Signature-Key member is not the signer's key")
	}
	base, err := Base(sig, tg)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(sig, base, pub); err != nil {
		t.Fatalf("verify: %v\nbase:\n%s", err, base)
	}
	if !strings.Contains(string(base), "\n\"signature-key\": "+h.Get(HeaderSignatureKey)+"\n") {
		t.Fatalf("signature-key line is not the raw value:\n%s", base)
	}
	// An alg naming the other algorithm is refused before the crypto.
	wrong := *sig
	wrong.Alg = keys.AlgEd25519
	if pub.Alg() == keys.AlgEd25519 {
		wrong.Alg = keys.AlgECDSAP256
	}
	asError(t, Verify(&wrong, base, pub), CodeUnsupportedAlgorithm)
	if extra {
		if err := CheckContentDigest(h.Get("Content-Digest"), body); err != nil {
			t.Fatalf("content digest: %v", err)
		}
		if CheckContentDigest(h.Get("Content-Digest"), append(body, '!')) == nil {
			t.Fatal("a changed body passed the digest")
		}
	}
}

// SECURITY-CASES A5: Signature-Key on two field lines. The signature-key line of the base
// is the ", "-joined value, the dictionary's last member is the key, and a signature
// over only one of the lines fails.
func TestSignatureKeyMultipleFieldLines(t *testing.T) {
	agent, other := agentKey(t), otherKey(t)
	now := time.Unix(vectorCreated, 0)
	cases := []struct {
		name   string
		lines  []string
		signer *keys.Signer
		ok     bool
	}{
		{"legacy: other then agent", []string{hwkValue(other, "sig", false), hwkValue(agent, "sig", false)}, agent, true},
		{"dictionary: other then agent", []string{hwkValue(other, "sig", true), hwkValue(agent, "sig", true)}, agent, true},
		{"dictionary: jwt then hwk", []string{`sig=jwt;jwt="x.y.z"`, hwkValue(agent, "sig", true)}, agent, true},
		{"legacy: agent then other, signed by agent", []string{hwkValue(agent, "sig", false), hwkValue(other, "sig", false)}, agent, false},
		{"legacy: agent then other, signed by other", []string{hwkValue(agent, "sig", false), hwkValue(other, "sig", false)}, other, true},
		{"legacy line then dictionary line", []string{hwkValue(other, "sig", false), hwkValue(agent, "sig", true)}, agent, false},
		{"dictionary line then legacy line", []string{hwkValue(other, "sig", true), hwkValue(agent, "sig", false)}, agent, false},
		{"second line another label", []string{hwkValue(agent, "sig", true), hwkValue(other, "x", true)}, agent, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := "GET /data HTTP/1.1\r\nHost: resource.example\r\n" +
				"Signature-Input: " + a1Input + "\r\n" +
				"Signature: sig=:" + zeroSig64 + ":\r\n"
			for _, l := range c.lines {
				raw += "Signature-Key:  " + l + " \r\n"
			}
			raw += "\r\n"
			_, tg := readRaw(t, raw)
			if n := len(tg.Header.Values(HeaderSignatureKey)); n != len(c.lines) {
				t.Fatalf("%d field lines received", n)
			}
			joined := strings.Join(c.lines, ", ")
			sig, err := Parse(tg.Header, DefaultLimits)
			if err != nil {
				if c.ok {
					t.Fatal(err)
				}
				asError(t, err, CodeInvalidSignature)
				return
			}
			base, err := Base(sig, tg)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(base), "\"signature-key\": "+joined+"\n") {
				t.Fatalf("base does not carry the joined value:\n%s", base)
			}
			s, _ := c.signer.Sign(base)
			sig.Value = s
			pub, err := keys.FromMembers(sig.Key.Map())
			if err != nil {
				// jwt member: the key would come from the token; stand in with the signer.
				pub = c.signer.Public
			}
			if err := Verify(sig, base, pub); (err == nil) != c.ok {
				t.Fatalf("verify err = %v, want ok=%v", err, c.ok)
			}
			if !c.ok {
				return
			}
			if err := (Policy{}).Check(sig, tg, now); err != nil {
				t.Fatal(err)
			}
			// A signature over the last line alone does not verify the combined request.
			h1 := tg.Header.Clone()
			h1.Set(HeaderSignatureKey, c.lines[len(c.lines)-1])
			t1 := tg
			t1.Header = h1
			sig1, err := Parse(h1, DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			base1, _ := Base(sig1, t1)
			sig.Value, _ = c.signer.Sign(base1)
			if Verify(sig, base, pub) == nil {
				t.Fatal("a signature over one field line verified the combined value")
			}
		})
	}
}

// SECURITY-CASES B5: the request changed after signing.
func TestRejectMutatedRequest(t *testing.T) {
	signer := agentKey(t)
	now := time.Unix(vectorCreated, 0)
	req, _ := http.NewRequest("GET", "https://resource.example/api/a/b", nil)
	if err := Sign(req, signer, hwkKey(signer), SignOptions{Created: now}); err != nil {
		t.Fatal(err)
	}
	orig := TargetOf(req)
	cases := []struct {
		name string
		mut  func(*Target)
		ok   bool
	}{
		{"unchanged", func(*Target) {}, true},
		{"method", func(x *Target) { x.Method = "POST" }, false},
		{"method case", func(x *Target) { x.Method = "get" }, false},
		{"authority", func(x *Target) { x.Authority = "evil.example" }, false},
		{"authority with port", func(x *Target) { x.Authority = "resource.example:8443" }, false},
		{"authority with default port not removed", func(x *Target) { x.Authority = "resource.example:443" }, false},
		{"authority normalised from the Host", func(x *Target) { x.Authority = Authority("https", "RESOURCE.EXAMPLE:443") }, true},
		{"one char of path", func(x *Target) { x.Path = "/api/a/c" }, false},
		{"path case", func(x *Target) { x.Path = "/API/a/b" }, false},
		{"%2F for /", func(x *Target) { x.Path = "/api/a%2Fb" }, false},
		{"%61 for a", func(x *Target) { x.Path = "/api/%61/b" }, false},
		{"dot segment", func(x *Target) { x.Path = "/api/x/../a/b" }, false},
		{"single dot segment", func(x *Target) { x.Path = "/api/./a/b" }, false},
		{"double slash", func(x *Target) { x.Path = "/api//a/b" }, false},
		{"trailing slash", func(x *Target) { x.Path = "/api/a/b/" }, false},
		{"empty path", func(x *Target) { x.Path = "" }, false},
		{"absolute-form in the path", func(x *Target) { x.Path = "https://resource.example/api/a/b" }, false},
		{"query added", func(x *Target) { x.Query, x.HasQuery = "admin=1", true }, false},
		{"empty query added (?)", func(x *Target) { x.HasQuery = true }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := orig
			c.mut(&tg)
			_, stage, err := verifyRequest(req.Header, tg, Policy{}, now, signer.Public)
			if c.ok != (stage == "") {
				t.Fatalf("stage %q err %v, want ok=%v", stage, err, c.ok)
			}
			if !c.ok {
				asError(t, err, CodeInvalidSignature)
			}
		})
	}
	// @path excludes the query: a signature that does not cover @query survives a query
	// being added at the Base/Verify level; only Policy.Check (P4) catches it.
	tg := orig
	tg.Query, tg.HasQuery = "admin=1", true
	sig, _ := Parse(req.Header, DefaultLimits)
	base, _ := Base(sig, tg)
	if err := Verify(sig, base, signer.Public); err != nil {
		t.Fatalf("documented behaviour changed: %v", err)
	}
	// Once @query is covered, a changed query fails Verify itself.
	req2, _ := http.NewRequest("GET", "https://resource.example/api?x=1", nil)
	_ = Sign(req2, signer, hwkKey(signer), SignOptions{Created: now})
	tg2 := TargetOf(req2)
	tg2.Query = "x=2"
	if _, stage, _ := verifyRequest(req2.Header, tg2, Policy{}, now, signer.Public); stage != "verify" {
		t.Fatalf("changed query: stage %q", stage)
	}
}

// Signer options and defaults.
func TestSignOptions(t *testing.T) {
	signer := agentKey(t)
	req, _ := http.NewRequest("GET", "https://resource.example/data", nil)
	created := time.Unix(vectorCreated, 0)
	err := Sign(req, signer, SigKey{Scheme: SchemeJWKSURI, Params: []Param{{"id", "https://agent.example"}, {"kid", "key-1"}}},
		SignOptions{Label: "s1", Created: created, Expires: created.Add(30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get(HeaderSignatureKey); got != `s1=(scheme=jwks_uri id="https://agent.example" kid="key-1")` {
		t.Fatalf("Signature-Key %s", got)
	}
	if got := req.Header.Get(HeaderSignatureInput); got != `s1=("@method" "@authority" "@path" "signature-key");created=1774920963;expires=1774920993` {
		t.Fatalf("Signature-Input %s", got)
	}
	sig, stage, err := verifyRequest(req.Header, TargetOf(req), Policy{}, created, signer.Public)
	if stage != "" || sig.Expires != 1774920993 {
		t.Fatalf("%s %v", stage, err)
	}
	// Re-signing replaces the old headers rather than adding field lines.
	if err := Sign(req, signer, hwkKey(signer), SignOptions{Created: created}); err != nil {
		t.Fatal(err)
	}
	for _, n := range sigHeaders {
		if len(req.Header.Values(n)) != 1 {
			t.Fatalf("%s has %d field lines", n, len(req.Header.Values(n)))
		}
	}
	if _, stage, err := verifyRequest(req.Header, TargetOf(req), Policy{}, created, signer.Public); stage != "" {
		t.Fatal(err)
	}
	// A nonce is a signed parameter: two otherwise identical requests differ, and both verify.
	var inputs []string
	for range 2 {
		r, _ := http.NewRequest("POST", "https://resource.example/data", nil)
		if err := Sign(r, signer, hwkKey(signer), SignOptions{Created: created, Nonce: NewNonce()}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(r.Header.Get(HeaderSignatureInput), `;nonce="`) {
			t.Fatalf("no nonce: %s", r.Header.Get(HeaderSignatureInput))
		}
		if _, stage, err := verifyRequest(r.Header, TargetOf(r), Policy{}, created, signer.Public); stage != "" {
			t.Fatal(err)
		}
		inputs = append(inputs, r.Header.Get(HeaderSignature))
	}
	if inputs[0] == inputs[1] {
		t.Fatal("two nonces gave the same signature")
	}
	// Default Created is now.
	req3, _ := http.NewRequest("GET", "https://resource.example/data", nil)
	_ = Sign(req3, signer, hwkKey(signer), SignOptions{})
	if _, stage, err := verifyRequest(req3.Header, TargetOf(req3), Policy{}, time.Now(), signer.Public); stage != "" {
		t.Fatal(err)
	}
}

// CheckContentDigest (RFC 9530) accepts sha-256 and sha-512 and every present supported
// member must match.
func TestCheckContentDigest(t *testing.T) {
	body := []byte(`{"hello": "world"}`)
	s256 := ContentDigest(body)
	s512 := "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
	cases := []struct {
		name, field string
		body        []byte
		ok          bool
	}{
		{"sha-256", s256, body, true},
		{"sha-256 other body", s256, []byte("x"), false},
		{"sha-512", s512, body, true},
		{"both", s256 + ", " + s512, body, true},
		{"sha-256 good, sha-512 bad", s256 + ", sha-512=:" + encStd(make([]byte, 64)) + ":", body, false},
		{"unknown algorithm only", "md5=:" + encStd(make([]byte, 16)) + ":", body, false},
		{"unknown plus sha-256", "md5=:AAAA:, " + s256, body, true},
		{"truncated digest", "sha-256=:" + encStd(make([]byte, 16)) + ":", body, false},
		{"string, not bytes", `sha-256="abc"`, body, false},
		{"inner list", `sha-256=(:AAAA:)`, body, false},
		{"not a dictionary", `((`, body, false},
		{"empty", ``, body, false},
		{"base64url in sf-binary", strings.NewReplacer("+", "-", "/", "_").Replace(s512), body, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckContentDigest(c.field, c.body)
			if c.ok != (err == nil) {
				t.Fatalf("err %v, want ok=%v", err, c.ok)
			}
			if err != nil {
				asError(t, err, CodeInvalidSignature)
			}
		})
	}
}
