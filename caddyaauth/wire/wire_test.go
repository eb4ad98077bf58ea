package wire

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestChallengeFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Challenge
		want string
	}{
		{"identity", Challenge{Require: RequireIdentity}, `require=identity`},
		{"auth-token", Challenge{Require: RequireAuthToken, ResourceToken: "eyJ.a.b", AuthServer: "https://as.example"},
			`require=auth-token; resource-token="eyJ.a.b"; auth-server="https://as.example"`},
		{"interaction", Challenge{Require: RequireInteraction, Code: "7R6XKPRP"}, `require=interaction; code="7R6XKPRP"`},
		// RFC 8941 §3.3.3: only '"' and '\' are escaped; %q would have escaped more.
		{"quote and backslash", Challenge{Require: RequireInteraction, Code: `a"b\c`}, `require=interaction; code="a\"b\\c"`},
		{"unicode-looking ascii", Challenge{Require: RequireInteraction, Code: `\u00e9`}, `require=interaction; code="\\u00e9"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.c.Format()
			if err != nil || got != tc.want {
				t.Fatalf("Format = %q, %v; want %q", got, err, tc.want)
			}
			back, ok := ParseChallengeValues([]string{got})
			if !ok || back != tc.c {
				t.Fatalf("round trip = %+v, %v; want %+v", back, ok, tc.c)
			}
		})
	}
}

func TestChallengeFormatRefuses(t *testing.T) {
	for _, c := range []Challenge{
		{},                      // no require
		{Require: "auth token"}, // not a token
		{Require: "1x"},         // a token starts with ALPHA or *
		{Require: RequireInteraction, Code: "é"},           // not ASCII
		{Require: RequireInteraction, Code: "line\nbreak"}, // control character
		{Require: RequireAuthToken, AuthServer: "tab\there"},
	} {
		if v, err := c.Format(); err == nil {
			t.Errorf("Format(%+v) = %q, want an error", c, v)
		}
	}
}

func TestSetAndParseChallenge(t *testing.T) {
	h := http.Header{}
	c := Challenge{Require: RequireAuthToken, ResourceToken: "r", AuthServer: "https://as.example"}
	if err := Seed.SetChallenge(h, c); err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1008 the test checks the exact spelling "AAuth" that SetChallenge/WriteInteraction write into the header map
	if len(h["AAuth"]) != 1 {
		t.Fatalf("header map = %v, want the exact spelling AAuth", h)
	}
	if got, ok := Seed.ParseChallenge(h); !ok || got != c {
		t.Fatalf("ParseChallenge = %+v, %v", got, ok)
	}
	// Read off the wire the name arrives canonicalised.
	//lint:ignore SA1008 the test checks the exact spelling "AAuth" that SetChallenge/WriteInteraction write into the header map
	wireHdr := http.Header{"Aauth": h["AAuth"]}
	if got, ok := Seed.ParseChallenge(wireHdr); !ok || got != c {
		t.Fatalf("canonical ParseChallenge = %+v, %v", got, ok)
	}
	if _, ok := Seed.ParseChallenge(http.Header{}); ok {
		t.Fatal("absent header parsed")
	}
	// A second wire with another header name does not see the seed's header.
	other := &Wire{ChallengeHeader: "AAuth-Requirement"}
	if _, ok := other.ParseChallenge(h); ok {
		t.Fatal("another wire read the seed's header")
	}
}

func TestParseChallengeValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want Challenge
		ok   bool
	}{
		{"no spaces", []string{`require=auth-token;auth-server="https://as.example";resource-token="t"`},
			Challenge{Require: RequireAuthToken, AuthServer: "https://as.example", ResourceToken: "t"}, true},
		{"unknown params ignored", []string{`require=identity; foo=1; bar`}, Challenge{Require: RequireIdentity}, true},
		{"other members ignored", []string{`other=1, require=identity`}, Challenge{Require: RequireIdentity}, true},
		{"two lines", []string{`other=1`, `require=identity`}, Challenge{Require: RequireIdentity}, true},
		{"escaped string", []string{`require=interaction; code="a\"b"`}, Challenge{Require: RequireInteraction, Code: `a"b`}, true},
		{"empty", nil, Challenge{}, false},
		{"no require", []string{`code="x"`}, Challenge{}, false},
		{"require is a string", []string{`require="identity"`}, Challenge{}, false},
		{"require is an inner list", []string{`require=(identity)`}, Challenge{}, false},
		{"require is boolean", []string{`require`}, Challenge{}, false},
		{"token param not string", []string{`require=auth-token; resource-token=abc`}, Challenge{}, false},
		{"unterminated string", []string{`require=auth-token; auth-server="https://as`}, Challenge{}, false},
		{"bad escape", []string{`require=interaction; code="a\x"`}, Challenge{}, false},
		{"garbage", []string{"require=identity;;"}, Challenge{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseChallengeValues(tc.in)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("ParseChallengeValues(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseChallenge(f *testing.F) {
	for _, s := range []string{
		`require=identity`,
		`require=auth-token; resource-token="eyJ.a.b"; auth-server="https://as.example"`,
		`require=interaction; code="7R6XKPRP"`,
		`other=1, require=identity;foo=?1`,
		`require=auth-token; resource-token=abc`,
		`require="x"`, ``, `;;`, `require=identity;code="\"\\"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseChallengeValues([]string{s})
		if !ok {
			if c != (Challenge{}) {
				t.Fatalf("refused input left %+v", c)
			}
			return
		}
		if c.Require == "" {
			t.Fatal("accepted a challenge without require")
		}
		// What was parsed formats, and formats back to the same challenge.
		v, err := c.Format()
		if err != nil {
			t.Fatalf("parsed %+v does not format: %v", c, err)
		}
		if back, ok := ParseChallengeValues([]string{v}); !ok || back != c {
			t.Fatalf("%q: round trip %q = %+v, %v; want %+v", s, v, back, ok, c)
		}
	})
}

func TestErrorBody(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, http.StatusUnauthorized, Error{Code: CodeInvalidSignature, Description: `a "quoted" <desc> & more`})
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("answer %d %v", rec.Code, rec.Header())
	}
	// Member order and escaping as json.Marshal of the old map wrote them.
	want := `{"error":"invalid_signature","error_description":"a \"quoted\" \u003cdesc\u003e \u0026 more"}`
	if got := rec.Body.String(); got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
	e := Error{Code: CodeInvalidSignature, Description: "d", RequiredComponents: []string{"@method", "content-digest"}}
	if got := string(e.JSON()); got != `{"error":"invalid_signature","error_description":"d","required_components":["@method","content-digest"]}` {
		t.Fatalf("with components: %s", got)
	}
}

func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Error
	}{
		{`{"error":"denied","error_description":"no"}`, Error{Code: "denied", Description: "no"}},
		{`{"error":"denied","extra":{"x":1}}`, Error{Code: "denied"}},
		{`{"error":"x","required_components":["@path"]}`, Error{Code: "x", RequiredComponents: []string{"@path"}}},
		{``, Error{}},
		{`not json`, Error{}},
		{`["error"]`, Error{}},
		{`{"error":5}`, Error{}},
		{`{"error":"a","error_description":`, Error{}},
		{`null`, Error{}},
	} {
		if got := DecodeError([]byte(tc.in)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DecodeError(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func jwtWithHeader(h string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(h)) + ".e30.sig"
}

func TestTokenType(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
	}{
		{jwtWithHeader(`{"typ":"agent+jwt","alg":"EdDSA"}`), TypAgent},
		{jwtWithHeader(`{"typ":"Auth+JWT"}`), TypAuth},
		{jwtWithHeader(`{"typ":"application/resource+jwt"}`), TypResource},
		{jwtWithHeader(`{"alg":"EdDSA"}`), ""},
		{jwtWithHeader(`{"typ":1}`), ""},
		{jwtWithHeader(`{"typ":"agent+jwt","pad":"` + strings.Repeat("x", 1100) + `"}`), ""}, // header too long
		{"nodots", ""},
		{".e30.sig", ""},
		{"!!!.e30.sig", ""},
	} {
		if got := TokenType(tc.raw); got != tc.want {
			t.Errorf("TokenType(%.40q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func TestValidScope(t *testing.T) {
	for s, want := range map[string]bool{
		"read": true, "files:read": true, "a!#[]~": true, "https://x/y?z": true,
		"": false, "a b": false, `a"b`: false, `a\b`: false, "é": false, "a\tb": false, "\x7f": false,
	} {
		if got := ValidScope(s); got != want {
			t.Errorf("ValidScope(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestReadDocument(t *testing.T) {
	obj := map[string]any{
		"agent": "https://agent.example", "clarification_supported": "yes", // wrong type: skipped
		"client_name": "Agent", "callback_endpoint": "https://agent.example/cb",
		"localhost_callback_allowed": true, "unknown": 1,
	}
	var md AgentMetadata
	ReadDocument(obj, &md)
	want := AgentMetadata{Agent: "https://agent.example", ClientName: "Agent", CallbackEndpoint: "https://agent.example/cb", LocalhostCallbackAllowed: true}
	if md != want {
		t.Fatalf("AgentMetadata = %+v, want %+v", md, want)
	}
	var rm ResourceMetadata
	ReadDocument(map[string]any{"scope_descriptions": map[string]any{"a": "A", "b": 2}}, &rm)
	if rm.ScopeDescriptions["a"] != "A" || rm.ScopeDescriptions["b"] != "" {
		t.Fatalf("ScopeDescriptions = %v", rm.ScopeDescriptions)
	}
}

func TestWriteInteraction(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := Seed.WriteInteraction(rec, "https://as.example/pending/x", "ABCD", "2"); err != nil {
		t.Fatal(err)
	}
	h := rec.Header()
	//lint:ignore SA1008 the test checks the exact spelling "AAuth" that SetChallenge/WriteInteraction write into the header map
	if rec.Code != http.StatusAccepted || h["AAuth"][0] != `require=interaction; code="ABCD"` || h.Get("Location") != "https://as.example/pending/x" || h.Get("Retry-After") != "2" {
		t.Fatalf("answer %d %v", rec.Code, h)
	}
	if got := rec.Body.String(); got != `{"status":"pending","location":"https://as.example/pending/x","require":"interaction","code":"ABCD"}` {
		t.Fatalf("body %s", got)
	}
}

// TestSetUnauthorized: a 401's fields are the challenge (exact spelling) and
// WWW-Authenticate: AAuth, each its own one-value slice (appending to one must not
// write into the other); a challenge that cannot be formatted sets nothing.
func TestSetUnauthorized(t *testing.T) {
	h := http.Header{}
	c := Challenge{Require: RequirePseudonym}
	if err := Seed.SetUnauthorized(h, c); err != nil {
		t.Fatal(err)
	}
	if got := h.Get("WWW-Authenticate"); got != "AAuth" {
		t.Errorf("WWW-Authenticate = %q", got)
	}
	if got, ok := Seed.ParseChallenge(h); !ok || got != c {
		t.Fatalf("ParseChallenge = %+v, %v", got, ok)
	}
	h.Add("WWW-Authenticate", "Bearer")
	//lint:ignore SA1008 the exact spelling "AAuth" is the key SetUnauthorized writes
	if got := h["AAuth"]; len(got) != 1 || got[0] != "require=pseudonym" {
		t.Errorf("appending to WWW-Authenticate changed the challenge: %q", got)
	}
	bad := http.Header{}
	if err := Seed.SetUnauthorized(bad, Challenge{Require: RequireAuthToken, ResourceToken: "é"}); err == nil || len(bad) != 0 {
		t.Errorf("unformattable challenge: err %v, header %v", err, bad)
	}
}

// TestErrorBodyBuffersReused: bodies built in pooled buffers never carry bytes of an
// earlier, longer one, written one after another and at once.
func TestErrorBodyBuffersReused(t *testing.T) {
	long := Error{Code: CodeInvalidSignature, Description: strings.Repeat("x", 300)}
	short := Error{Code: CodeInvalidRequest, Description: "d"}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := short
			if i%2 == 0 {
				e = long
			}
			rec := httptest.NewRecorder()
			WriteError(rec, http.StatusBadRequest, e)
			if got := rec.Body.String(); got != string(e.JSON()) {
				t.Errorf("body %q, want %q", got, e.JSON())
			}
		}()
	}
	wg.Wait()
}
