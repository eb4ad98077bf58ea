package caddyaauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func TestConnectionWithout(t *testing.T) {
	renamed := []string{"X-Remote-User"}
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{[]string{"keep-alive"}, []string{"keep-alive"}},
		{[]string{"X-Aauth-Delegate"}, nil},
		{[]string{"keep-alive, X-Aauth-Level,x_aauth_agent", "Upgrade"}, []string{"keep-alive", "Upgrade"}},
		{[]string{"x-remote-user, close"}, []string{"close"}},
		{[]string{"X_Remote_User"}, nil},
		{[]string{" , ,"}, nil},
		{[]string{"X-Aauthx"}, []string{"X-Aauthx"}}, // not an identity header
	} {
		if got := connectionWithout(tc.in, renamed); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("connectionWithout(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSanitizeRequest(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/x", io.NopCloser(strings.NewReader("body")))
	r.ContentLength = -1
	r.Header.Set("X-Aauth-Level", "authorized")
	r.Header.Set("X-Remote-User", "admin")
	r.Header.Set("X-Other", "kept")
	r.Header.Set("Connection", "X-Aauth-Level, keep-alive")
	r.Header.Set("Trailer", "X-Aauth-Subject, X-Checksum")
	r.Trailer = http.Header{"X-Aauth-Subject": nil, "X-Checksum": nil}
	sanitizeRequest(r, []string{"X-Remote-User"})
	if r.Header.Get("X-Aauth-Level") != "" || r.Header.Get("X-Remote-User") != "" || r.Header.Get("X-Other") != "kept" {
		t.Fatalf("headers: %v", r.Header)
	}
	if got := r.Header.Values("Connection"); !reflect.DeepEqual(got, []string{"keep-alive"}) {
		t.Fatalf("Connection = %q", got)
	}
	if got := r.Header.Values("Trailer"); !reflect.DeepEqual(got, []string{"X-Checksum"}) {
		t.Fatalf("Trailer = %q", got)
	}
	if _, ok := r.Trailer["X-Aauth-Subject"]; ok {
		t.Fatal("declared identity trailer kept")
	}
	// Trailers arrive when the body ends; the stripper removes them then.
	r.Trailer["X-Aauth-Agent"] = []string{"https://admin.example"}
	if _, err := io.ReadAll(r.Body); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Trailer["X-Aauth-Agent"]; ok {
		t.Fatal("received identity trailer kept")
	}
	if _, ok := r.Trailer["X-Checksum"]; !ok {
		t.Fatal("other trailer removed")
	}

	// A request with a known length and no trailers keeps its body as it was, and a
	// Connection field that names no identity header is left as sent.
	plain := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader("body"))
	plain.Header.Set("Connection", "keep-alive,  Upgrade")
	body := plain.Body
	sanitizeRequest(plain, []string{"X-Remote-User"})
	if plain.Body != body {
		t.Fatal("body wrapped without need")
	}
	if got := plain.Header.Values("Connection"); !reflect.DeepEqual(got, []string{"keep-alive,  Upgrade"}) {
		t.Fatalf("Connection = %q", got)
	}
}
