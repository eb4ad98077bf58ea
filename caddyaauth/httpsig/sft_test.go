package httpsig

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type sftCase struct {
	file       string
	Name       string   `json:"name"`
	Raw        []string `json:"raw"`
	HeaderType string   `json:"header_type"`
	MustFail   bool     `json:"must_fail"`
	CanFail    bool     `json:"can_fail"`
}

// loadSFT reads every parse case of the httpwg structured-field-tests (the top-level
// *.json files; the serialisation-tests folder is not parse input).
func loadSFT(t *testing.T) []sftCase {
	t.Helper()
	dir := sharedTestdata(t, "structured-field-tests")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no *.json files in %s", dir)
	}
	var all []sftCase
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cs []sftCase
		if err := json.Unmarshal(b, &cs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i := range cs {
			cs[i].file = filepath.Base(f)
		}
		all = append(all, cs...)
	}
	return all
}

var sigHeaders = []string{HeaderSignatureInput, HeaderSignature, HeaderSignatureKey}

// noPanic runs f and turns a panic into a test error.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: panic: %v", what, r)
		}
	}()
	f()
}

// SECURITY-CASES A2: every dictionary case as each of the three headers (the other two
// set to the Appendix A1 values). Parse must not panic, must only fail with an *Error,
// and nothing may pass through: a successful Parse must still fail Base or Verify with
// the Appendix A key.
func TestStructuredFieldDictionaryCases(t *testing.T) {
	cases := loadSFT(t)
	pub := agentKey(t).Public
	dict, parsed := 0, map[string]int{}
	for _, c := range cases {
		if c.HeaderType != "dictionary" {
			continue
		}
		dict++
		for _, name := range sigHeaders {
			what := fmt.Sprintf("%s %q as %s", c.file, c.Name, name)
			noPanic(t, what, func() {
				h := a1Header()
				h[name] = append([]string(nil), c.Raw...)
				sig, err := Parse(h, DefaultLimits)
				if err != nil {
					var e *Error
					if !errors.As(err, &e) {
						t.Errorf("%s: error %v is %T, not *Error", what, err, err)
					}
					return
				}
				parsed[name]++
				base, err := Base(sig, vectorTarget(h))
				if err != nil {
					return
				}
				if Verify(sig, base, pub) == nil {
					t.Errorf("%s: passed through Parse, Base and Verify", what)
				}
			})
		}
	}
	if dict != 432 {
		t.Fatalf("ran %d dictionary cases, want 432", dict)
	}
	t.Logf("%d dictionary cases × 3 headers; Parse succeeded (and Verify then failed) for %v", dict, parsed)
}

// SECURITY-CASES A2: all parse cases, whatever their type, through every entry point
// that sees raw header text, for crash-freedom.
func TestStructuredFieldAllCasesNoPanic(t *testing.T) {
	cases := loadSFT(t)
	for _, c := range cases {
		joined := strings.Join(c.Raw, ", ")
		what := fmt.Sprintf("%s %q", c.file, c.Name)
		noPanic(t, what+" ParseSignatureKey", func() { _, _ = ParseSignatureKey(joined) })
		noPanic(t, what+" DecodeBase64", func() { _, _ = DecodeBase64(joined) })
		noPanic(t, what+" CheckContentDigest", func() { _ = CheckContentDigest(joined, nil) })
		for _, name := range sigHeaders {
			noPanic(t, what+" Parse as "+name, func() {
				h := a1Header()
				h[name] = append([]string(nil), c.Raw...)
				if sig, err := Parse(h, DefaultLimits); err == nil {
					_, _ = Base(sig, vectorTarget(h))
				}
			})
		}
		noPanic(t, what+" Parse as all three", func() {
			h := http.Header{}
			for _, name := range sigHeaders {
				h[name] = append([]string(nil), c.Raw...)
			}
			if sig, err := Parse(h, DefaultLimits); err == nil {
				_, _ = Base(sig, vectorTarget(h))
			}
		})
	}
	if len(cases) != 1591 {
		t.Fatalf("ran %d parse cases, want 1591", len(cases))
	}
	t.Logf("%d parse cases through ParseSignatureKey, DecodeBase64, CheckContentDigest and Parse (4 ways)", len(cases))
}
