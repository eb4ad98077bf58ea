package reqverify_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

func TestReadSignedBody(t *testing.T) {
	plain := &httpsig.Signature{Components: []string{"@method"}}
	digest := &httpsig.Signature{Components: []string{"@method", "content-digest"}}
	both := &httpsig.Signature{Components: []string{"@method", "content-type", "content-digest"}}
	const body = `{"a":1}`
	for _, tc := range []struct {
		name     string
		sig      *httpsig.Signature
		body     string
		digestOf string // "-": no Content-Digest field
		policy   reqverify.BodyPolicy
		status   int // 0: accepted
		required bool
	}{
		{"uncovered body read", plain, body, "-", reqverify.BodyPolicy{Max: 64}, 0, false},
		{"covered digest recomputed", digest, body, body, reqverify.BodyPolicy{Max: 64}, 0, false},
		{"covered digest of another body", digest, body, `{"a":2}`, reqverify.BodyPolicy{Max: 64}, 401, false},
		{"demanded digest missing", plain, body, "-", reqverify.BodyPolicy{Max: 64, Demanded: []string{"content-digest"}}, 401, false},
		{"too large", plain, body, "-", reqverify.BodyPolicy{Max: 3}, 413, false},
		{"too large with digest", digest, body, body, reqverify.BodyPolicy{Max: 3}, 413, false},
		{"require signed: nothing covered", plain, body, "-", reqverify.BodyPolicy{Max: 64, RequireSigned: true}, 401, true},
		{"require signed: no content-type", digest, body, body, reqverify.BodyPolicy{Max: 64, RequireSigned: true}, 401, true},
		{"require signed: digest checked first", both, body, "x", reqverify.BodyPolicy{Max: 64, RequireSigned: true}, 401, false},
		{"require signed: met", both, body, body, reqverify.BodyPolicy{Max: 64, RequireSigned: true}, 0, false},
		{"empty body", plain, "", "-", reqverify.BodyPolicy{Max: 64}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://as.example/token", strings.NewReader(tc.body))
			if tc.digestOf != "-" {
				r.Header.Set("Content-Digest", httpsig.ContentDigest([]byte(tc.digestOf)))
			}
			got, err := reqverify.ReadSignedBody(r, tc.sig, tc.policy)
			if tc.status == 0 {
				if err != nil || string(got) != tc.body {
					t.Fatalf("ReadSignedBody = %q, %v", got, err)
				}
				again, _ := io.ReadAll(r.Body) // put back for the upstream
				if string(again) != tc.body {
					t.Fatalf("body put back %q", again)
				}
				return
			}
			status, e, ok := reqverify.Refusal(err)
			if !ok || status != tc.status {
				t.Fatalf("Refusal(%v) = %d, %+v, %v; want %d", err, status, e, ok, tc.status)
			}
			if tc.required != (len(e.RequiredComponents) > 0) {
				t.Fatalf("required components %v", e.RequiredComponents)
			}
			if tc.required && !reflect.DeepEqual(e.RequiredComponents[len(e.RequiredComponents)-2:], reqverify.BodyComponents) {
				t.Fatalf("required components %v lack the body components", e.RequiredComponents)
			}
		})
	}
}

func TestRefusal(t *testing.T) {
	if _, _, ok := reqverify.Refusal(errors.New("disk on fire")); ok {
		t.Fatal("a plain error mapped to a refusal")
	}
	status, e, ok := reqverify.Refusal(&httpsig.Error{Code: wire.CodeInvalidKey, Msg: "m", RequiredComponents: []string{"@path"}})
	if !ok || status != http.StatusUnauthorized || e.Code != wire.CodeInvalidKey || e.Description != "m" || len(e.RequiredComponents) != 1 {
		t.Fatalf("httpsig.Error → %d %+v %v", status, e, ok)
	}
	status, e, ok = reqverify.Refusal(reqverify.ErrNotJSON)
	if !ok || status != http.StatusBadRequest || e.Code != wire.CodeInvalidRequest {
		t.Fatalf("ErrNotJSON → %d %+v %v", status, e, ok)
	}
}

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "Application/JSON; charset=UTF-8": true,
		"application/json; charset=latin1": false, "text/json": false, "application/jsonx": false, "": false, "application/json; =": false,
	} {
		if got := reqverify.IsJSON(ct); got != want {
			t.Errorf("IsJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestDecodeJSON(t *testing.T) {
	type scopeReq struct {
		Scope string `json:"scope"`
	}
	for _, tc := range []struct {
		in, err string // err "": accepted
	}{
		{`{"scope":"a b"}`, ""},
		{"  {\"scope\":\"a\"}\n\t ", ""},
		{`{}`, ""},
		{`{"scope":"a","other":1}`, "notvalue"},
		{`{"scope":1}`, "notvalue"},
		{`["scope"]`, "notvalue"},
		{``, "notvalue"},
		{`{"scope":"a"`, "notvalue"},
		{`{"scope":"a"}{}`, "unexpected data after the JSON object"},
		{`{"scope":"a"} x`, "unexpected data after the JSON object"},
		{"{\"scope\":\"\xff\"}", "request body is not valid UTF-8"},
	} {
		var v scopeReq
		err := reqverify.DecodeJSON([]byte(tc.in), &v, "notvalue")
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("DecodeJSON(%q) = %v", tc.in, err)
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("DecodeJSON(%q) = %v, want %q", tc.in, err, tc.err)
		case err != nil:
			if status, _, ok := reqverify.Refusal(err); !ok || status != http.StatusBadRequest {
				t.Errorf("DecodeJSON(%q) error maps to %d", tc.in, status)
			}
		}
	}
}
