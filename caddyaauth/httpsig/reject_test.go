package httpsig

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// pipeCase is one request through the verifier pipeline, starting from the Appendix A1
// headers and target (GET resource.example/data, created=1774920963).
type pipeCase struct {
	name   string
	hdr    func(h http.Header) // change the headers before signing
	sign   bool                // re-sign (agent key, label "sig") so only the property under test can fail
	signer string              // "other": re-sign with the second key instead
	post   func(h http.Header) // change the headers after signing
	target func(t *Target)     // change what the verifier sees after signing
	pol    Policy
	now    int64  // verifier clock; 0 means vectorCreated
	stage  string // "parse", "check", "key", "base", "verify", or "" for accepted
	code   string
	msg    string                       // substring of the error message, optional
	check  func(*testing.T, *Signature) // extra assertions on the parsed signature
}

func runPipe(t *testing.T, cases []pipeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := a1Header()
			if c.hdr != nil {
				c.hdr(h)
			}
			tg := vectorTarget(h)
			if c.sign {
				s := agentKey(t)
				if c.signer == "other" {
					s = otherKey(t)
				}
				signHeaders(t, h, tg, s, "sig")
			}
			if c.post != nil {
				c.post(h)
			}
			if c.target != nil {
				c.target(&tg)
			}
			now := c.now
			if now == 0 {
				now = vectorCreated
			}
			sig, stage, err := verifyRequest(h, tg, c.pol, time.Unix(now, 0), agentKey(t).Public)
			if stage != c.stage {
				t.Fatalf("failed at stage %q (%v), want stage %q", stage, err, c.stage)
			}
			if c.stage != "" {
				e := asError(t, err, c.code)
				if c.msg != "" && !strings.Contains(e.Msg, c.msg) {
					t.Fatalf("message %q does not contain %q", e.Msg, c.msg)
				}
			}
			if c.check != nil {
				c.check(t, sig)
			}
		})
	}
}

func set(name, value string) func(http.Header) {
	return func(h http.Header) { h.Set(name, value) }
}

func del(names ...string) func(http.Header) {
	return func(h http.Header) {
		for _, n := range names {
			h.Del(n)
		}
	}
}

func input(params string) func(http.Header) {
	return set(HeaderSignatureInput, params)
}

const (
	a1List    = `("@method" "@authority" "@path" "signature-key")`
	zeroSig64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
)

// The baseline must pass, or every row below proves nothing.
func TestPipelineBaseline(t *testing.T) {
	runPipe(t, []pipeCase{
		{name: "A1 as is"},
		{name: "A1 re-signed", sign: true},
	})
}

// SECURITY-CASES A1: header presence.
func TestRejectMissingHeaders(t *testing.T) {
	var cs []pipeCase
	for _, n := range sigHeaders {
		cs = append(cs,
			pipeCase{name: n + " missing", hdr: del(n), stage: "parse", code: CodeInvalidRequest, msg: "missing " + n},
			pipeCase{name: n + " empty", hdr: set(n, ""), stage: "parse", code: CodeInvalidRequest, msg: "missing " + n},
			pipeCase{name: n + " blank", hdr: set(n, " \t "), stage: "parse", code: CodeInvalidRequest, msg: "missing " + n},
			// Two empty field lines combine to ", " (RFC 9421 §2.1), which is not empty: it is
			// refused as malformed rather than as missing.
			pipeCase{name: n + " only empty field lines", hdr: func(h http.Header) { h[n] = []string{"", ""} }, stage: "parse", code: CodeInvalidSignature},
		)
	}
	cs = append(cs,
		pipeCase{name: "all missing", hdr: del(sigHeaders...), stage: "parse", code: CodeInvalidRequest},
		pipeCase{name: "all empty", hdr: func(h http.Header) {
			for _, n := range sigHeaders {
				h.Set(n, "")
			}
		}, stage: "parse", code: CodeInvalidRequest},
	)
	runPipe(t, cs)
	if Present(http.Header{}) || !Present(http.Header{HeaderSignatureKey: {"x"}}) {
		t.Fatal("Present")
	}
}

// SECURITY-CASES A3: oversized headers are refused by size before any parsing. The
// other headers are made malformed too: had anything been parsed first, the code would
// be invalid_signature, not invalid_request.
func TestRejectOversizedHeaders(t *testing.T) {
	caps := map[string]int{
		HeaderSignatureInput: DefaultLimits.MaxSignatureInput,
		HeaderSignature:      DefaultLimits.MaxSignature,
		HeaderSignatureKey:   DefaultLimits.MaxSignatureKey,
	}
	var cs []pipeCase
	for _, n := range sigHeaders {
		n, lim := n, caps[n]
		garbage := func(size int) func(http.Header) {
			return func(h http.Header) {
				for _, o := range sigHeaders {
					h.Set(o, "(((")
				}
				h.Set(n, strings.Repeat("(", size))
			}
		}
		cs = append(cs,
			pipeCase{name: fmt.Sprintf("%s at cap+1 (%d)", n, lim+1), hdr: garbage(lim + 1), stage: "parse", code: CodeInvalidRequest, msg: "too large"},
			pipeCase{name: fmt.Sprintf("%s at 64 KiB", n), hdr: garbage(64 << 10), stage: "parse", code: CodeInvalidRequest, msg: "too large"},
			pipeCase{name: fmt.Sprintf("%s over cap across two field lines", n), hdr: func(h http.Header) {
				h.Set(n, strings.Repeat("a", lim/2+1))
				h.Add(n, strings.Repeat("a", lim/2+1))
			}, stage: "parse", code: CodeInvalidRequest, msg: "too large"},
			// Exactly at the cap is parsed (and then refused as malformed).
			pipeCase{name: fmt.Sprintf("%s exactly at cap is parsed", n), hdr: func(h http.Header) {
				h.Set(n, strings.Repeat("(", lim))
			}, stage: "parse", code: CodeInvalidSignature},
		)
	}
	runPipe(t, cs)
}

func members(n int, f func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = f(i)
	}
	return strings.Join(parts, ", ")
}

// SECURITY-CASES A4, A6, A7: labels.
func TestRejectLabels(t *testing.T) {
	a1Sig := "sig=:" + appendixA[0].sig + ":"
	otherHWK := hwkValue(otherSigner(), "sig", false)
	agentHWK := appendixA[0].sigKey
	var cs []pipeCase
	for _, n := range []int{2, 5, 100, 1000} {
		code := CodeInvalidSignature
		if n >= 100 {
			code = CodeInvalidRequest // over the size cap before counting
		}
		cs = append(cs,
			pipeCase{name: fmt.Sprintf("A4 Signature-Input with %d labels", n), hdr: input(members(n, func(i int) string {
				return fmt.Sprintf("s%d=%s;created=1774920963", i, a1List)
			})), stage: "parse", code: code},
		)
	}
	cs = append(cs,
		pipeCase{name: "A4 Signature with 5 labels", hdr: set(HeaderSignature, members(5, func(i int) string {
			if i == 0 {
				return a1Sig
			}
			return fmt.Sprintf("s%d=:%s:", i, appendixA[0].sig)
		})), stage: "parse", code: CodeInvalidSignature, msg: "does not declare"},
		pipeCase{name: "A4 Signature-Key with 5 labels", hdr: set(HeaderSignatureKey, members(5, func(i int) string {
			return fmt.Sprintf(`s%d=(scheme=hwk x="a")`, i)
		})), stage: "parse", code: CodeInvalidSignature},
		pipeCase{name: "A4 Signature-Key with 1000 labels", hdr: set(HeaderSignatureKey, members(1000, func(i int) string {
			return fmt.Sprintf(`s%d=(scheme=hwk x="a")`, i)
		})), stage: "parse", code: CodeInvalidRequest, msg: "too large"},
		pipeCase{name: "A4 expected label plus an extra Signature-Key member", hdr: set(HeaderSignatureKey, agentHWK+`, extra=(scheme=hwk x="a")`), stage: "parse", code: CodeInvalidSignature, msg: "not present"},

		// A6: a duplicate label in one header: the last member wins, for parse and verify.
		pipeCase{name: "A6 Signature-Input duplicate, A1 last: accepted", hdr: input(`sig=("@method" "@authority" "@path" "signature-key");created=1774920999, ` + a1Input)},
		pipeCase{name: "A6 Signature-Input duplicate, A1 first: the last is verified", hdr: input(a1Input + `, sig=("@method" "@authority" "@path" "signature-key");created=1774920964`), stage: "verify", code: CodeInvalidSignature,
			check: func(t *testing.T, s *Signature) {
				if s.Created != 1774920964 {
					t.Fatalf("created %d: the first member was used", s.Created)
				}
			}},
		pipeCase{name: "A6 Signature duplicate, good last: accepted", hdr: set(HeaderSignature, "sig=:"+zeroSig64+":, "+a1Sig)},
		pipeCase{name: "A6 Signature duplicate, good first: rejected", hdr: set(HeaderSignature, a1Sig+", sig=:"+zeroSig64+":"), stage: "verify", code: CodeInvalidSignature},
		pipeCase{name: "A6 Signature duplicate, short first then good", hdr: set(HeaderSignature, "sig=:AAAA:, "+a1Sig)},
		pipeCase{name: "A6 Signature duplicate, good then short", hdr: set(HeaderSignature, a1Sig+", sig=:AAAA:"), stage: "parse", code: CodeInvalidSignature, msg: "64 bytes"},
		pipeCase{name: "A6 Signature-Key legacy duplicate, signer's key last: accepted", hdr: set(HeaderSignatureKey, otherHWK+", "+agentHWK), sign: true,
			check: func(t *testing.T, s *Signature) {
				if s.Key.Get("x") != "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" {
					t.Fatalf("key %v: not the last member", s.Key.Params)
				}
			}},
		pipeCase{name: "A6 Signature-Key legacy duplicate, signer's key first: rejected", hdr: set(HeaderSignatureKey, agentHWK+", "+otherHWK), sign: true, stage: "verify", code: CodeInvalidSignature},
		pipeCase{name: "A6 Signature-Key dictionary duplicate, signer's key last: accepted", hdr: set(HeaderSignatureKey, hwkValue(otherSigner(), "sig", true)+", "+appendixA[1].sigKey), sign: true},
		pipeCase{name: "A6 Signature-Key dictionary duplicate, signer's key first: rejected", hdr: set(HeaderSignatureKey, appendixA[1].sigKey+", "+hwkValue(otherSigner(), "sig", true)), sign: true, stage: "verify", code: CodeInvalidSignature},
		pipeCase{name: "A6 Signature-Key duplicate signed by the last key: accepted", hdr: set(HeaderSignatureKey, agentHWK+", "+otherHWK), sign: true, signer: "other"},

		// A7: the label must be the same in all three headers.
		pipeCase{name: "A7 Signature label differs", hdr: set(HeaderSignature, "other=:"+appendixA[0].sig+":"), stage: "parse", code: CodeInvalidSignature},
		pipeCase{name: "A7 Signature-Key label differs", hdr: set(HeaderSignatureKey, strings.Replace(agentHWK, "sig=", "other=", 1)), stage: "parse", code: CodeInvalidSignature, msg: "not present"},
		pipeCase{name: "A7 Signature-Input label differs", hdr: input(strings.Replace(a1Input, "sig=", "other=", 1)), stage: "parse", code: CodeInvalidSignature},
		pipeCase{name: "A7 label case differs", hdr: set(HeaderSignature, "Sig=:"+appendixA[0].sig+":"), stage: "parse", code: CodeInvalidSignature},
		pipeCase{name: "A7 Signature-Input label in Signature-Key only", hdr: func(h http.Header) {
			h.Set(HeaderSignatureInput, strings.Replace(a1Input, "sig=", "s2=", 1))
			h.Set(HeaderSignature, "s2=:"+appendixA[0].sig+":")
		}, stage: "parse", code: CodeInvalidSignature, msg: "not present"},
		pipeCase{name: "A7 all three relabelled consistently: parses, signature covers the label", hdr: func(h http.Header) {
			h.Set(HeaderSignatureInput, strings.Replace(a1Input, "sig=", "s2=", 1))
			h.Set(HeaderSignature, "s2=:"+appendixA[0].sig+":")
			h.Set(HeaderSignatureKey, strings.Replace(agentHWK, "sig=", "s2=", 1))
		}, stage: "verify", code: CodeInvalidSignature},
	)
	runPipe(t, cs)
}

// SECURITY-CASES A8: wrong structured-field types.
func TestRejectWrongTypes(t *testing.T) {
	dictKey := `;kty="OKP";crv="Ed25519";x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"`
	runPipe(t, []pipeCase{
		{name: "Signature value a string", hdr: set(HeaderSignature, `sig="`+appendixA[0].sig+`"`), stage: "parse", code: CodeInvalidSignature, msg: "byte sequence"},
		{name: "Signature value a token", hdr: set(HeaderSignature, `sig=`+appendixA[0].sig), stage: "parse", code: CodeInvalidSignature, msg: "byte sequence"},
		{name: "Signature value an inner list", hdr: set(HeaderSignature, `sig=(:`+appendixA[0].sig+`:)`), stage: "parse", code: CodeInvalidSignature},
		{name: "Signature value an integer", hdr: set(HeaderSignature, `sig=1`), stage: "parse", code: CodeInvalidSignature},
		{name: "Signature value boolean", hdr: set(HeaderSignature, `sig`), stage: "parse", code: CodeInvalidSignature},
		{name: "Signature value with parameters", hdr: set(HeaderSignature, `sig=:`+appendixA[0].sig+`:;p=1`), stage: "parse", code: CodeInvalidSignature},
		{name: "Signature value with a comma in a parameter", hdr: set(HeaderSignature, `sig=:`+appendixA[0].sig+`:;p="a,b"`), stage: "parse", code: CodeInvalidSignature},
		{name: "Signature trailing comma", hdr: set(HeaderSignature, `sig=:`+appendixA[0].sig+`:,`), stage: "parse", code: CodeInvalidSignature},
		{name: "Signature-Input member an Item", hdr: input(`sig="@method";created=1774920963`), stage: "parse", code: CodeInvalidSignature, msg: "inner list"},
		{name: "Signature-Input member a token", hdr: input(`sig=method;created=1774920963`), stage: "parse", code: CodeInvalidSignature, msg: "inner list"},
		{name: "component a token", hdr: input(`sig=("@method" "@authority" "@path" signature-key);created=1774920963`), stage: "parse", code: CodeInvalidSignature, msg: "strings"},
		{name: "component an integer", hdr: input(`sig=("@method" "@authority" "@path" 1);created=1774920963`), stage: "parse", code: CodeInvalidSignature, msg: "strings"},
		{name: "component a byte sequence", hdr: input(`sig=("@method" "@authority" "@path" :AAAA:);created=1774920963`), stage: "parse", code: CodeInvalidSignature, msg: "strings"},
		{name: "component uppercase", hdr: input(`sig=("@method" "@authority" "@path" "Signature-Key");created=1774920963`), stage: "parse", code: CodeInvalidSignature, msg: "lowercase"},
		{name: "component empty", hdr: input(`sig=("@method" "@authority" "@path" "signature-key" "");created=1774920963`), stage: "parse", code: CodeInvalidSignature},
		{name: "created decimal", hdr: input(`sig=` + a1List + `;created=1774920963.5`), stage: "parse", code: CodeInvalidSignature, msg: "created"},
		{name: "created string", hdr: input(`sig=` + a1List + `;created="1774920963"`), stage: "parse", code: CodeInvalidSignature, msg: "created"},
		{name: "created token", hdr: input(`sig=` + a1List + `;created=now`), stage: "parse", code: CodeInvalidSignature, msg: "created"},
		{name: "created boolean", hdr: input(`sig=` + a1List + `;created`), stage: "parse", code: CodeInvalidSignature, msg: "created"},
		{name: "created negative", hdr: input(`sig=` + a1List + `;created=-1774920963`), stage: "parse", code: CodeInvalidSignature, msg: "created"},
		{name: "created zero", hdr: input(`sig=` + a1List + `;created=0`), stage: "parse", code: CodeInvalidSignature, msg: "created"},
		{name: "created 15 digits (> 2^53 s)", hdr: input(`sig=` + a1List + `;created=999999999999999`), stage: "check", code: CodeInvalidSignature, msg: "window"},
		{name: "created 16 digits", hdr: input(`sig=` + a1List + `;created=9007199254740993`), stage: "parse", code: CodeInvalidSignature},
		{name: "created int64 overflow", hdr: input(`sig=` + a1List + `;created=99999999999999999999`), stage: "parse", code: CodeInvalidSignature},
		{name: "expires decimal", hdr: input(`sig=` + a1List + `;created=1774920963;expires=1774920999.0`), stage: "parse", code: CodeInvalidSignature, msg: "expires"},
		{name: "expires negative", hdr: input(`sig=` + a1List + `;created=1774920963;expires=-1`), stage: "parse", code: CodeInvalidSignature, msg: "expires"},
		{name: "alg a token", hdr: input(`sig=` + a1List + `;created=1774920963;alg=ed25519`), stage: "parse", code: CodeInvalidSignature, msg: "alg"},
		{name: "keyid an integer", hdr: input(`sig=` + a1List + `;created=1774920963;keyid=1`), stage: "parse", code: CodeInvalidSignature, msg: "keyid"},
		{name: "scheme a string in dictionary form", hdr: set(HeaderSignatureKey, `sig="hwk"`+dictKey), stage: "parse", code: CodeInvalidSignature, msg: "token"},
		{name: "scheme an integer in dictionary form", hdr: set(HeaderSignatureKey, `sig=1`+dictKey), stage: "parse", code: CodeInvalidSignature, msg: "token"},
		{name: "scheme as a parameter in dictionary form", hdr: set(HeaderSignatureKey, `sig=hwk;scheme="hwk"`+dictKey), stage: "parse", code: CodeInvalidSignature, msg: "scheme"},
		{name: "dictionary parameter not a string", hdr: set(HeaderSignatureKey, `sig=hwk;kty=OKP;crv="Ed25519"`), stage: "parse", code: CodeInvalidSignature, msg: "string"},
		{name: "dictionary parameter boolean", hdr: set(HeaderSignatureKey, `sig=hwk;kty`), stage: "parse", code: CodeInvalidSignature, msg: "string"},
		{name: "Signature-Key member an inner list (after another member)", hdr: set(HeaderSignatureKey, `other=hwk, sig=(hwk)`+dictKey), stage: "parse", code: CodeInvalidSignature, msg: "token with parameters"},
		{name: "Signature-Key member an inner list (first)", hdr: set(HeaderSignatureKey, `sig=(hwk)`+dictKey), stage: "parse", code: CodeInvalidSignature},
		{name: "Signature-Key not a dictionary", hdr: set(HeaderSignatureKey, `hwk`), stage: "parse", code: CodeInvalidSignature},
	})
}

// SECURITY-CASES A10: the signature bytes.
func TestRejectSignatureValue(t *testing.T) {
	raw, _ := DecodeBase64(appendixA[0].sig)
	std := encStd(raw)
	url := appendixA[0].sig
	sigOf := func(v string) func(http.Header) { return set(HeaderSignature, "sig=:"+v+":") }
	runPipe(t, []pipeCase{
		{name: "0 bytes", hdr: sigOf(""), stage: "parse", code: CodeInvalidSignature, msg: "64 bytes"},
		{name: "63 bytes", hdr: sigOf(encStd(raw[:63])), stage: "parse", code: CodeInvalidSignature, msg: "64 bytes"},
		{name: "65 bytes", hdr: sigOf(encStd(append(append([]byte(nil), raw...), 0))), stage: "parse", code: CodeInvalidSignature, msg: "64 bytes"},
		{name: "128 bytes", hdr: sigOf(encStd(append(append([]byte(nil), raw...), raw...))), stage: "parse", code: CodeInvalidSignature, msg: "64 bytes"},
		{name: "invalid base64 character", hdr: sigOf("!" + url[1:]), stage: "parse", code: CodeInvalidSignature, msg: "base64"},
		{name: "space inside", hdr: sigOf(url[:10] + " " + url[10:]), stage: "parse", code: CodeInvalidSignature, msg: "base64"},
		{name: "mixed alphabets", hdr: sigOf(strings.Replace(std, "/", "_", 1)), stage: "parse", code: CodeInvalidSignature, msg: "base64"},
		{name: "base64url with padding", hdr: sigOf(url + "=="), stage: ""},
		{name: "too much padding", hdr: sigOf(std + "="), stage: "parse", code: CodeInvalidSignature, msg: "base64"},
		{name: "three padding characters", hdr: sigOf(url + "==="), stage: "parse", code: CodeInvalidSignature, msg: "base64"},
		{name: "padding in the middle", hdr: sigOf(std[:4] + "=" + std[5:]), stage: "parse", code: CodeInvalidSignature, msg: "base64"},
		{name: "non-zero trailing bits", hdr: sigOf(url[:len(url)-1] + "h"), stage: "parse", code: CodeInvalidSignature, msg: "base64"},
		{name: "missing closing colon", hdr: set(HeaderSignature, "sig=:"+url), stage: "parse", code: CodeInvalidSignature},
		{name: "missing opening colon", hdr: set(HeaderSignature, "sig="+url+":"), stage: "parse", code: CodeInvalidSignature},
		{name: "lone colon", hdr: set(HeaderSignature, "sig=:"), stage: "parse", code: CodeInvalidSignature},
		{name: "no value", hdr: set(HeaderSignature, "sig="), stage: "parse", code: CodeInvalidSignature},
		{name: "no label", hdr: set(HeaderSignature, "=:"+url+":"), stage: "parse", code: CodeInvalidSignature},
		{name: "standard base64 padded", hdr: sigOf(std)},
		{name: "standard base64 unpadded", hdr: sigOf(strings.TrimRight(std, "="))},
		{name: "all zero 64 bytes", hdr: sigOf(zeroSig64), stage: "verify", code: CodeInvalidSignature},
	})
}

// SECURITY-CASES B1–B4: covered components.
func TestRejectComponents(t *testing.T) {
	var cs []pipeCase
	for _, c := range RequiredComponents {
		c := c
		var rest []string
		for _, x := range RequiredComponents {
			if x != c {
				rest = append(rest, `"`+x+`"`)
			}
		}
		cs = append(cs, pipeCase{
			name: "B1 " + c + " not covered", hdr: input(`sig=(` + strings.Join(rest, " ") + `);created=1774920963`), sign: true,
			stage: "check", code: CodeInvalidSignature, msg: c,
			check: func(t *testing.T, s *Signature) {
				if s.Covers(c) {
					t.Fatal("covers")
				}
			},
		})
	}
	cs = append(cs,
		pipeCase{name: "B1 empty list", hdr: input(`sig=();created=1774920963`), sign: true, stage: "check", code: CodeInvalidSignature},
		pipeCase{name: "B1 @query not covered but the request has a query", target: func(t *Target) { t.Query, t.HasQuery = "a=1", true }, stage: "check", code: CodeInvalidSignature, msg: "@query"},
		pipeCase{name: "B1 Extra content-type not covered", pol: Policy{Extra: []string{"content-type"}}, stage: "check", code: CodeInvalidSignature, msg: "content-type"},
		pipeCase{name: "B2 duplicate @method", hdr: input(`sig=("@method" "@method" "@authority" "@path" "signature-key");created=1774920963`), stage: "parse", code: CodeInvalidSignature, msg: "twice"},
		pipeCase{name: "B2 duplicate signature-key", hdr: input(`sig=("@method" "@authority" "@path" "signature-key" "signature-key");created=1774920963`), stage: "parse", code: CodeInvalidSignature, msg: "twice"},
		pipeCase{name: "B2 over MaxComponents", hdr: input(`sig=(` + strings.ReplaceAll(manyComponents(DefaultLimits.MaxComponents+1), ", ", " ") + `);created=1774920963`), stage: "parse", code: CodeInvalidSignature, msg: "too many"},
		pipeCase{name: "B3 unknown derived @foo", hdr: input(`sig=("@method" "@authority" "@path" "signature-key" "@foo");created=1774920963`), stage: "base", code: CodeInvalidSignature, msg: "@foo"},
		pipeCase{name: "B3 derived @target-uri not supported", hdr: input(`sig=("@method" "@authority" "@path" "signature-key" "@target-uri");created=1774920963`), stage: "base", code: CodeInvalidSignature},
		pipeCase{name: "B3 derived @query-param not supported", hdr: input(`sig=("@method" "@authority" "@path" "signature-key" "@query-param");created=1774920963`), stage: "base", code: CodeInvalidSignature},
		pipeCase{name: "B3 host field", hdr: input(`sig=("@method" "@authority" "@path" "signature-key" "host");created=1774920963`), stage: "base", code: CodeInvalidSignature, msg: "host"},
		pipeCase{name: "B3 covered header absent", hdr: input(`sig=("@method" "@authority" "@path" "signature-key" "content-digest");created=1774920963`), stage: "base", code: CodeInvalidSignature, msg: "not present"},
		pipeCase{name: "B3 covered header with a line break", hdr: func(h http.Header) {
			h.Set(HeaderSignatureInput, `sig=("@method" "@authority" "@path" "signature-key" "x-a");created=1774920963`)
			h["X-A"] = []string{"a\r\n\"@method\": POST"}
		}, stage: "base", code: CodeInvalidSignature, msg: "line break"},
	)
	for _, p := range []string{"sf", "key=\"kty\"", "bs", "req", "tr", "name=\"x\"", "unknown"} {
		cs = append(cs, pipeCase{
			name:  "B3 component parameter ;" + p,
			hdr:   input(`sig=("@method" "@authority" "@path" "signature-key";` + p + `);created=1774920963`),
			stage: "parse", code: CodeInvalidSignature, msg: "parameters",
		})
	}
	cs = append(cs,
		// B4: a field literally named like a derived component changes nothing.
		pipeCase{name: "B4 header @method present, ignored", hdr: func(h http.Header) {
			h["@method"] = []string{"DELETE"}
			h["@authority"] = []string{"evil.example"}
			h["@path"] = []string{"/admin"}
		}, check: func(t *testing.T, s *Signature) {}},
		pipeCase{name: "B4 header @method cannot mask a changed method", hdr: func(h http.Header) { h["@method"] = []string{"GET"} },
			target: func(t *Target) { t.Method = "DELETE" }, stage: "verify", code: CodeInvalidSignature},
	)
	runPipe(t, cs)

	// B1: the error carries the full required list.
	h := a1Header()
	h.Set(HeaderSignatureInput, `sig=("@method");created=1774920963`)
	sig, err := Parse(h, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	tg := vectorTarget(h)
	tg.Query, tg.HasQuery = "a=1", true
	e := asError(t, Policy{Extra: []string{"content-digest"}}.Check(sig, tg, time.Unix(vectorCreated, 0)), CodeInvalidSignature)
	want := []string{"@method", "@authority", "@path", "signature-key", "content-digest", "@query"}
	if !slices.Equal(e.RequiredComponents, want) {
		t.Fatalf("RequiredComponents = %v, want %v", e.RequiredComponents, want)
	}
	// B4: the base never contains a field literally named @method.
	h = a1Header()
	h["@method"] = []string{"DELETE"}
	sig, _ = Parse(h, DefaultLimits)
	base, _ := Base(sig, vectorTarget(h))
	if strings.Contains(string(base), "DELETE") {
		t.Fatalf("base uses the @method field:\n%s", base)
	}
}

func manyComponents(n int) string {
	return members(n, func(i int) string { return fmt.Sprintf(`"x-h%d"`, i) })
}

// SECURITY-CASES B8, B9: whitespace and the @signature-params line.
func TestCanonicalisation(t *testing.T) {
	pad := func(name, left, right string) func(http.Header) {
		return func(h http.Header) { h.Set(name, left+h.Get(name)+right) }
	}
	runPipe(t, []pipeCase{
		// B8: leading and trailing OWS on each field line is not part of the value.
		{name: "B8 OWS around Signature-Key", hdr: pad(HeaderSignatureKey, "  \t", "\t  ")},
		{name: "B8 OWS around Signature-Input", hdr: pad(HeaderSignatureInput, " ", " \t")},
		{name: "B8 OWS around Signature", hdr: pad(HeaderSignature, "\t", " ")},
		{name: "B8 OWS around all three", hdr: func(h http.Header) {
			for _, n := range sigHeaders {
				h.Set(n, "  "+h.Get(n)+"  ")
			}
		}},
		{name: "B8 OWS around a covered header", hdr: func(h http.Header) {
			h.Set(HeaderSignatureInput, `sig=("@method" "@authority" "@path" "signature-key" "content-type");created=1774920963`)
			h.Set("Content-Type", "application/json")
		}, sign: true, post: pad("Content-Type", " \t", "  ")},
		// Inner whitespace is part of the raw value: it is signed verbatim.
		{name: "B8 inner space added to A2 Signature-Key", hdr: func(h http.Header) {
			h.Set(HeaderSignatureKey, strings.Replace(appendixA[1].sigKey, ";", "; ", 1))
			h.Set(HeaderSignature, "sig=:"+appendixA[1].sig+":")
		}, stage: "verify", code: CodeInvalidSignature},
		{name: "B8 inner space in A2 Signature-Key, signed so", hdr: set(HeaderSignatureKey, strings.Replace(appendixA[1].sigKey, ";", "; ", 1)), sign: true},
		{name: "B8 tab inside the legacy form", hdr: set(HeaderSignatureKey, strings.Replace(appendixA[0].sigKey, " ", "\t", 1)), stage: "parse", code: CodeInvalidSignature},
		{name: "B8 inner tab in a covered header changes the base", hdr: func(h http.Header) {
			h.Set(HeaderSignatureInput, `sig=("@method" "@authority" "@path" "signature-key" "content-type");created=1774920963`)
			h.Set("Content-Type", "application/json; charset=utf-8")
		}, sign: true, post: set("Content-Type", "application/json;\tcharset=utf-8"), stage: "verify", code: CodeInvalidSignature},

		// B9: @signature-params is the canonical serialisation of what was received.
		{name: "B9 extra spaces inside the inner list are canonicalised", hdr: input(`sig=( "@method"  "@authority" "@path"   "signature-key" );  created=1774920963`)},
		{name: "B9 leading zeros in created are canonicalised", hdr: input(`sig=` + a1List + `;created=001774920963`)},
		{name: "B9 duplicate created: the last one is used", hdr: input(`sig=` + a1List + `;created=1;created=1774920963`)},
		{name: "B9 params reordered, signed so", hdr: input(`sig=` + a1List + `;keyid="key-1";created=1774920963`), sign: true},
		{name: "B9 params reordered against the A1 signature", hdr: input(`sig=` + a1List + `;keyid="key-1";created=1774920963`), stage: "verify", code: CodeInvalidSignature},
		{name: "B9 components reordered against the A1 signature", hdr: input(`sig=("@authority" "@method" "@path" "signature-key");created=1774920963`), stage: "verify", code: CodeInvalidSignature},
		{name: "B9 extra nonce tag keyid alg, signed", hdr: input(`sig=` + a1List + `;created=1774920963;nonce="n1";tag="aauth";keyid="k";alg="ed25519"`), sign: true,
			check: func(t *testing.T, s *Signature) {
				if s.KeyID != "k" || s.Alg != "ed25519" {
					t.Fatalf("%+v", s)
				}
			}},
		{name: "B9 extra nonce added after signing", post: input(`sig=` + a1List + `;created=1774920963;nonce="n1"`), stage: "verify", code: CodeInvalidSignature},
		{name: "B9 unknown parameter foo", hdr: input(`sig=` + a1List + `;created=1774920963;foo="x"`), stage: "parse", code: CodeInvalidSignature, msg: "unknown"},
		{name: "B9 escaped keyid, signed", hdr: input(`sig=` + a1List + `;created=1774920963;keyid="a\"b\\c"`), sign: true,
			check: func(t *testing.T, s *Signature) {
				if s.KeyID != `a"b\c` {
					t.Fatalf("keyid %q", s.KeyID)
				}
			}},
		{name: "B9 created tampered after signing", hdr: input(`sig=` + a1List + `;created=1774920963;keyid="k"`), sign: true, post: input(`sig=` + a1List + `;created=1774920964;keyid="k"`), stage: "verify", code: CodeInvalidSignature},
		{name: "B9 keyid tampered after signing", hdr: input(`sig=` + a1List + `;created=1774920963;keyid="k"`), sign: true, post: input(`sig=` + a1List + `;created=1774920963;keyid="j"`), stage: "verify", code: CodeInvalidSignature},
		{name: "B9 expires removed after signing", hdr: input(`sig=` + a1List + `;created=1774920963;expires=1774921000`), sign: true, post: input(a1Input), stage: "verify", code: CodeInvalidSignature},
		{name: "B9 expires extended after signing", hdr: input(`sig=` + a1List + `;created=1774920963;expires=1774921000`), sign: true, post: input(`sig=` + a1List + `;created=1774920963;expires=1774929999`), stage: "verify", code: CodeInvalidSignature},
		// D6: keyid is not a key selector; the key comes from Signature-Key only.
		{name: "D6 keyid naming another key", hdr: input(`sig=` + a1List + `;created=1774920963;keyid="auth-key-1"`), sign: true},
	})
}

// SECURITY-CASES C1–C3: time.
func TestRejectTime(t *testing.T) {
	const c = vectorCreated
	w30 := Policy{Window: 30 * time.Second}
	withExpires := func(exp int64) func(http.Header) {
		return input(fmt.Sprintf(`sig=%s;created=%d;expires=%d`, a1List, c, exp))
	}
	createdAt := func(v int64) func(http.Header) { return input(fmt.Sprintf(`sig=%s;created=%d`, a1List, v)) }
	runPipe(t, []pipeCase{
		{name: "C1 created missing", hdr: input(`sig=` + a1List), stage: "parse", code: CodeInvalidSignature, msg: "created is required"},
		{name: "C1 created missing, expires present", hdr: input(`sig=` + a1List + `;expires=1774921000`), stage: "parse", code: CodeInvalidSignature, msg: "created is required"},
		{name: "C2 now = created", pol: w30, now: c},
		{name: "C2 now = created + window", pol: w30, now: c + 30},
		{name: "C2 now = created + window + 1s", pol: w30, now: c + 31, stage: "check", code: CodeInvalidSignature, msg: "window"},
		{name: "C2 now = created - window (created in the future)", pol: w30, now: c - 30},
		{name: "C2 now = created - window - 1s", pol: w30, now: c - 31, stage: "check", code: CodeInvalidSignature, msg: "window"},
		{name: "C2 default window 60s edge", now: c + 60},
		{name: "C2 default window 60s + 1", now: c + 61, stage: "check", code: CodeInvalidSignature, msg: "1m0s"},
		{name: "C2 default window -60s + -1", now: c - 61, stage: "check", code: CodeInvalidSignature},
		{name: "C2 negative Window means the default", pol: Policy{Window: -time.Hour}, now: c + 61, stage: "check", code: CodeInvalidSignature},
		{name: "C2 wide window replays the vector", pol: Policy{Window: 24 * 365 * time.Hour}, now: c + 86400*300},
		{name: "C2 far past created", hdr: createdAt(1), sign: true, stage: "check", code: CodeInvalidSignature, msg: "window"},
		{name: "C2 far future created (largest SF integer)", hdr: createdAt(999999999999999), sign: true, stage: "check", code: CodeInvalidSignature, msg: "window"},
		{name: "C2 far future created, huge window", hdr: createdAt(999999999999999), sign: true, pol: Policy{Window: 1<<63 - 1}, stage: "check", code: CodeInvalidSignature},
		{name: "C3 expires in the future", hdr: withExpires(c + 10), sign: true, now: c + 9},
		{name: "C3 expires = now", hdr: withExpires(c + 10), sign: true, now: c + 10, stage: "check", code: CodeInvalidSignature, msg: "expired"},
		{name: "C3 expires past", hdr: withExpires(c + 10), sign: true, now: c + 20, stage: "check", code: CodeInvalidSignature, msg: "expired"},
		{name: "C3 expires < created", hdr: withExpires(c - 1), sign: true, stage: "check", code: CodeInvalidSignature, msg: "before created"},
		{name: "C3 expires = created", hdr: withExpires(c), sign: true, stage: "check", code: CodeInvalidSignature, msg: "expired"},
		{name: "C3 expires far future, window still enforced", hdr: withExpires(c + 86400), sign: true, now: c + 61, stage: "check", code: CodeInvalidSignature, msg: "window"},
	})
}

// SECURITY-CASES D3: the alg parameter must agree with the key.
func TestRejectAlgMismatch(t *testing.T) {
	alg := func(a string) func(http.Header) {
		return input(`sig=` + a1List + `;created=1774920963;alg="` + a + `"`)
	}
	var cs []pipeCase
	for _, a := range []string{"hmac-sha256", "rsa-pss-sha512", "rsa-v1_5-sha256", "ecdsa-p256-sha256", "ecdsa-p384-sha384", "Ed25519", "EdDSA", "foo", ""} {
		cs = append(cs, pipeCase{name: "alg " + a, hdr: alg(a), sign: true, stage: "verify", code: CodeUnsupportedAlgorithm, msg: "does not match"})
	}
	cs[len(cs)-1].name, cs[len(cs)-1].stage, cs[len(cs)-1].code, cs[len(cs)-1].msg = `alg "" is treated as absent`, "", "", ""
	cs = append(cs, pipeCase{name: "alg ed25519 agrees", hdr: alg("ed25519"), sign: true})
	// The alg check comes before the crypto: a bad signature still reports the alg.
	cs = append(cs, pipeCase{name: "alg mismatch with a bad signature", hdr: alg("hmac-sha256"), stage: "verify", code: CodeUnsupportedAlgorithm})
	runPipe(t, cs)

	// An ECDSA key named ed25519.
	s, err := keys.Generate(keys.AlgECDSAP256, "p")
	if err != nil {
		t.Fatal(err)
	}
	sig := &Signature{Alg: "ed25519", Value: make([]byte, 64)}
	asError(t, Verify(sig, []byte("x"), s.Public), CodeUnsupportedAlgorithm)
	sig.Alg = "ecdsa-p256-sha256"
	asError(t, Verify(sig, []byte("x"), s.Public), CodeInvalidSignature)
}

// The seed's parenthesised Signature-Key syntax is parsed strictly.
func TestLegacySignatureKeyParser(t *testing.T) {
	cases := []struct {
		name, in string
		n        int // members expected; 0 means an error
		msg      string
	}{
		{"A1", appendixA[0].sigKey, 1, ""},
		{"no params", `sig=(scheme=hwk)`, 1, ""},
		{"leading and trailing space inside", `sig=( scheme=hwk  x="a" )`, 1, ""},
		{"scheme last", `sig=(x="a" scheme=hwk)`, 1, ""},
		{"escaped quote and backslash", `sig=(scheme=hwk x="a\"b\\c")`, 1, ""},
		{"empty quoted value", `sig=(scheme=hwk x="")`, 1, ""},
		{"two members", `sig=(scheme=hwk x="a"), other=(scheme=jwt jwt="b")`, 2, ""},
		{"two members, tab before comma", "sig=(scheme=hwk x=\"a\")\t,\tother=(scheme=jwt jwt=\"b\")", 2, ""},
		{"missing scheme", `sig=(kty="OKP" x="a")`, 0, "no scheme"},
		{"empty parens", `sig=()`, 0, "no scheme"},
		{"quoted scheme", `sig=(scheme="hwk" x="a")`, 0, "bare token"},
		{"empty scheme", `sig=(scheme= x="a")`, 0, "empty value"},
		{"duplicate params", `sig=(scheme=hwk x="a" x="b")`, 0, "duplicate"},
		{"duplicate scheme", `sig=(scheme=hwk scheme=jwt x="a")`, 0, "duplicate"},
		{"unterminated string", `sig=(scheme=hwk x="abc)`, 0, "quoted"},
		{"unterminated string at end", `sig=(scheme=hwk x="abc`, 0, "quoted"},
		{"unterminated parens", `sig=(scheme=hwk x="a"`, 0, ""},
		{"unterminated parens after scheme", `sig=(scheme=hwk`, 0, "malformed"},
		{"trailing backslash", `sig=(scheme=hwk x="a\`, 0, "quoted"},
		{"bad escape", `sig=(scheme=hwk x="a\n")`, 0, "quoted"},
		{"control char in string", "sig=(scheme=hwk x=\"a\x01b\")", 0, "quoted"},
		{"DEL in string", "sig=(scheme=hwk x=\"a\x7fb\")", 0, "quoted"},
		{"non-ASCII in string", "sig=(scheme=hwk x=\"é\")", 0, "quoted"},
		{"newline between params", "sig=(scheme=hwk\nx=\"a\")", 0, "malformed"},
		{"tab between params", "sig=(scheme=hwk\tx=\"a\")", 0, "malformed"},
		{"no space between params", `sig=(scheme=hwk x="a"y="b")`, 0, "separated"},
		{"unquoted value", `sig=(scheme=hwk kty=OKP)`, 0, "quoted string"},
		{"param without value", `sig=(scheme=hwk x)`, 0, "malformed"},
		{"uppercase param name", `sig=(scheme=hwk X="a")`, 0, "malformed"},
		{"trailing garbage", `sig=(scheme=hwk x="a")garbage`, 0, "unexpected"},
		{"trailing comma", `sig=(scheme=hwk x="a"),`, 0, "malformed"},
		{"trailing semicolon params", `sig=(scheme=hwk x="a");p=1`, 0, "unexpected"},
		{"second member not legacy", `sig=(scheme=hwk x="a"), b=hwk;x="a"`, 0, "malformed"},
		{"uppercase label", `Sig=(scheme=hwk)`, 0, ""},
		{"nested parens", `sig=((scheme=hwk))`, 0, "malformed"},
		{"scheme with parenthesis", `sig=(scheme=hw(k x="a")`, 0, "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ms, err := ParseSignatureKey(c.in)
			if c.n == 0 {
				e := asError(t, err, CodeInvalidSignature)
				if !strings.Contains(e.Msg, c.msg) {
					t.Fatalf("message %q, want %q", e.Msg, c.msg)
				}
				// And through Parse as the Signature-Key header.
				h := a1Header()
				h.Set(HeaderSignatureKey, c.in)
				if _, err := Parse(h, DefaultLimits); err == nil {
					t.Fatal("Parse accepted it")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != c.n {
				t.Fatalf("%d members, want %d", len(ms), c.n)
			}
			for _, m := range ms {
				if !m.Legacy || m.Scheme == "" {
					t.Fatalf("%+v", m)
				}
			}
			h := a1Header()
			h.Set(HeaderSignatureKey, c.in)
			_, err = Parse(h, DefaultLimits)
			if c.n > 1 {
				asError(t, err, CodeInvalidSignature) // one signature, one member
			}
		})
	}
	// Escapes decode to the value.
	ms, _ := ParseSignatureKey(`sig=(scheme=hwk x="a\"b\\c" kty="OKP")`)
	if ms[0].Get("x") != `a"b\c` || !ms[0].Has("kty") || ms[0].Has("scheme") || ms[0].Scheme != "hwk" {
		t.Fatalf("%+v", ms[0])
	}
	// Empty input.
	for _, in := range []string{"", " ", "\t"} {
		_, err := ParseSignatureKey(in)
		asError(t, err, CodeInvalidRequest)
	}
}

// SECURITY-CASES B7: @authority normalisation.
func TestAuthority(t *testing.T) {
	cases := []struct{ scheme, host, want string }{
		{"https", "resource.example", "resource.example"},
		{"https", "RESOURCE.Example", "resource.example"},
		{"https", "resource.example:443", "resource.example"},
		{"http", "resource.example:80", "resource.example"},
		{"https", "resource.example:80", "resource.example:80"},
		{"http", "resource.example:443", "resource.example:443"},
		{"https", "resource.example:8443", "resource.example:8443"},
		{"https", "Resource.Example:8443", "resource.example:8443"},
		{"https", "resource.example:", "resource.example"},
		{"https", "[::1]", "[::1]"},
		{"https", "[::1]:443", "[::1]"},
		{"http", "[::1]:80", "[::1]"},
		{"https", "[::1]:8443", "[::1]:8443"},
		{"https", "[FE80::1]:443", "[fe80::1]"},
		{"https", "[2001:DB8::1]:8443", "[2001:db8::1]:8443"},
		{"https", "127.0.0.1:443", "127.0.0.1"},
		{"https", "127.0.0.1:8002", "127.0.0.1:8002"},
		{"https", "localhost:8002", "localhost:8002"},
		{"https", "resource.example.", "resource.example."}, // trailing dot is not stripped
		{"", "resource.example:443", "resource.example:443"},
	}
	for _, c := range cases {
		t.Run(c.scheme+" "+c.host, func(t *testing.T) {
			if got := Authority(c.scheme, c.host); got != c.want {
				t.Fatalf("Authority(%q, %q) = %q, want %q", c.scheme, c.host, got, c.want)
			}
		})
	}
}

// TestParseCheckedOrder: ParseChecked refuses a stale or under-covering signature before
// it decodes Signature and Signature-Key (cheap checks first), so a request broken in
// both ways gets the policy's refusal; Parse, which has no policy, reports the broken
// header. A request that passes the policy still has its headers checked.
func TestParseCheckedOrder(t *testing.T) {
	brokenKey := set(HeaderSignatureKey, `sig=(scheme=hwk kty="OKP"`)
	brokenSig := set(HeaderSignature, "sig=:not base64:")
	cases := []struct {
		name      string
		post      []func(http.Header)
		now       int64
		wantCode  string
		wantMsg   string // in ParseChecked's error
		parseMsgs string // in Parse's error
	}{
		{"stale, broken Signature-Key", []func(http.Header){brokenKey}, vectorCreated + 61, CodeInvalidSignature, "window", "separated"},
		{"stale, broken Signature", []func(http.Header){brokenSig}, vectorCreated + 61, CodeInvalidSignature, "window", "Signature"},
		{"under-covering, broken Signature-Key", []func(http.Header){input(`sig=("@method");created=1774920963`), brokenKey}, vectorCreated, CodeInvalidSignature, "does not cover", "separated"},
		{"fresh, broken Signature-Key", []func(http.Header){brokenKey}, vectorCreated, CodeInvalidSignature, "separated", "separated"},
		{"fresh and whole", nil, vectorCreated, "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := a1Header()
			for _, f := range c.post {
				f(h)
			}
			_, err := Policy{}.ParseChecked(h, DefaultLimits, vectorTarget(h), time.Unix(c.now, 0))
			if c.wantCode == "" {
				if err != nil {
					t.Fatalf("ParseChecked: %v", err)
				}
				return
			}
			e := asError(t, err, c.wantCode)
			if !strings.Contains(e.Msg, c.wantMsg) {
				t.Errorf("ParseChecked: %q does not contain %q", e.Msg, c.wantMsg)
			}
			if _, perr := Parse(h, DefaultLimits); c.parseMsgs != "" && (perr == nil || !strings.Contains(perr.Error(), c.parseMsgs)) {
				t.Errorf("Parse: %v, want an error about %s", perr, c.parseMsgs)
			}
		})
	}
}

// TestRefusedSignatureRecycled: a Signature recycled from a refused parse (many
// components, a general-form input) leaves nothing behind in the next one, and a
// returned Signature is never handed out again.
func TestRefusedSignatureRecycled(t *testing.T) {
	want, err := Parse(a1Header(), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		h := a1Header()
		switch i % 3 {
		case 0:
			input(`sig=("@method" "@authority" "@path" "@query" "content-type" "x-a" "x-b" "x-c" "x-d");created=1;keyid="k";tag="t"`)(h)
		case 1:
			input(`sig=( "@method" );created=1;expires=notanumber`)(h)
		}
		if _, err := (Policy{}).ParseChecked(h, DefaultLimits, vectorTarget(h), time.Unix(vectorCreated+3600, 0)); err == nil {
			t.Fatal("a stale signature was accepted")
		}
		got, err := Parse(a1Header(), DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if got == want {
			t.Fatal("a returned Signature was handed out again")
		}
		if got.Label != want.Label || !slices.Equal(got.Components, want.Components) || got.Created != want.Created ||
			got.Expires != want.Expires || got.KeyID != want.KeyID || got.Alg != want.Alg || got.params != want.params {
			t.Fatalf("after a refusal: %+v, want %+v", got, want)
		}
	}
}
