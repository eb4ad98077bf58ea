package token

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/internal/shareddata"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

func sharedTestdata(t *testing.T, rel string) string { return shareddata.Dir(t, rel) }

type wpJWSFile struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		Comment string         `json:"comment"`
		Public  map[string]any `json:"public"`
		Private map[string]any `json:"private"`
		Tests   []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			JWS     string   `json:"jws"`
			Result  string   `json:"result"`
			Flags   []string `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// wycheproofParse is Parse with typ ignored and a non-JSON payload allowed: the Wycheproof
// JWS vectors carry no typ and sign the payload "foo". Every other rule still applies.
func wycheproofParse(raw string) (*Token, error) {
	return parse(raw, parseOpts{anyTyp: true, rawPayload: true})
}

// TestWycheproofJWS runs the Wycheproof JWS vectors (SECURITY-CASES.md E14):
//   - groups whose key is an EC P-256 key (the ES256 groups and the "wrong use/key_ops"
//     groups for the same key): our verdict (key accepted by keys.FromAny, Parse,
//     VerifySignature) must equal the expected one;
//   - HS256 groups (symmetric keys) and every case whose alg is none: all must be
//     rejected, valid or not;
//   - all remaining groups (RS*, PS*, ES512 on P-521): also all rejected, since only EdDSA
//     and ES256 are accepted.
func TestWycheproofJWS(t *testing.T) {
	p := sharedTestdata(t, "wycheproof/json_web_signature_test.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var f wpJWSFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var es256Valid, es256Invalid, hsNone, other, total int
	for gi, g := range f.TestGroups {
		kty, _ := g.Public["kty"].(string)
		crv, _ := g.Public["crv"].(string)
		privKty, _ := g.Private["kty"].(string)
		isES256 := kty == "EC" && crv == "P-256"
		isHS := privKty == "oct" || g.Public == nil && privKty == ""
		for _, tc := range g.Tests {
			total++
			var accepted bool
			var why string
			var key *keys.PublicKey
			if isES256 {
				key, err = keys.FromAny(g.Public)
				if err != nil {
					why = "key: " + err.Error()
				}
			}
			tok, perr := wycheproofParse(tc.JWS)
			switch {
			case perr != nil:
				why = perr.Error()
			case key == nil:
				if why == "" {
					why = "no usable key"
				}
			default:
				if err := tok.VerifySignature(key); err != nil {
					why = err.Error()
				} else {
					accepted = true
				}
			}
			switch {
			case isES256:
				want := tc.Result == "valid"
				if accepted != want {
					t.Errorf("group %d (%s) tc %d %q: accepted=%v, want %s (%s)", gi, g.Comment, tc.TcID, tc.Comment, accepted, tc.Result, why)
				}
				if want {
					es256Valid++
				} else {
					es256Invalid++
				}
			case isHS:
				if accepted {
					t.Errorf("HS256/none group %d tc %d accepted", gi, tc.TcID)
				}
				hsNone++
			default:
				if accepted {
					t.Errorf("group %d (%s) tc %d accepted (alg not allowed)", gi, g.Comment, tc.TcID)
				}
				other++
			}
		}
	}
	if total != f.NumberOfTests {
		t.Errorf("ran %d cases, file says %d", total, f.NumberOfTests)
	}
	t.Logf("Wycheproof JWS: %d cases; ES256 verdicts matched: %d valid + %d invalid; HS256/none rejected: %d; other algs rejected: %d",
		total, es256Valid, es256Invalid, hsNone, other)
	if es256Valid == 0 || es256Invalid == 0 || hsNone == 0 {
		t.Error("file structure changed: a category is empty")
	}
}
