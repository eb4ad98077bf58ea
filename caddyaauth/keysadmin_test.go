package caddyaauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// adminCall runs one admin request and returns the status and the keys of owner.
func adminCall(t *testing.T, method, path, body, owner string) (int, []keystore.Info) {
	t.Helper()
	a := &KeysAdmin{}
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	w := httptest.NewRecorder()
	var err error
	for _, rt := range a.Routes() {
		if rt.Pattern == path {
			err = rt.Handler.ServeHTTP(w, r)
		}
	}
	if apiErr, ok := err.(caddy.APIError); ok {
		return apiErr.HTTPStatus, nil
	} else if err != nil {
		t.Fatal(err)
	}
	var all, out []keystore.Info
	if err := json.Unmarshal(w.Body.Bytes(), &all); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, w.Body)
	}
	for _, in := range all {
		if in.Owner == owner {
			out = append(out, in)
		}
	}
	return w.Code, out
}

func jwksKIDs(t *testing.T, h *Handler) []string {
	t.Helper()
	w := httptest.NewRecorder()
	if err := h.serveWellKnown(w, httptest.NewRequest(http.MethodGet, PathResourceJWKS, nil)); err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		if k.D != "" {
			t.Fatal("the JWKS holds a private key")
		}
		out = append(out, k.KID)
	}
	slices.Sort(out)
	return out
}

// TestKeysAdminRotate: the admin API rotates a handler's resource key; the JWKS
// publishes the new key at once while the old key keeps signing until the publish delay.
func TestKeysAdminRotate(t *testing.T) {
	u, _ := NewKeyUser(caddy.Context{})
	defer u.Release()
	h := &Handler{Resource: "https://rotate.example", KeyRotationConfig: KeyRotationConfig{KeyPublishDelay: caddy.Duration(time.Hour)}}
	h.key = u.Acquire(&certmagic.FileStorage{Path: t.TempDir()}, keystore.RoleResource, h.Resource, keys.AlgEd25519, h.Policy(time.Minute, 0))
	s, err := h.key.Signer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first := s.Public.KID

	if code, _ := adminCall(t, http.MethodGet, "/aauth/keys/rotate", "", h.Resource); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET rotate: %d", code)
	}
	if code, _ := adminCall(t, http.MethodPost, "/aauth/keys/rotate", `{"owner":"https://unknown.example"}`, h.Resource); code != http.StatusNotFound {
		t.Fatalf("unknown owner: %d", code)
	}
	if code, _ := adminCall(t, http.MethodPost, "/aauth/keys/rotate", `{"owner":`, h.Resource); code != http.StatusBadRequest {
		t.Fatalf("bad body: %d", code)
	}
	if code, list := adminCall(t, http.MethodGet, "/aauth/keys", "", h.Resource); code != http.StatusOK || len(list) != 1 || list[0].KID != first || list[0].State != keystore.StateActive || !list[0].Retires.IsZero() {
		t.Fatalf("list before rotation: %d %+v", code, list)
	}
	if got := jwksKIDs(t, h); !slices.Equal(got, []string{first}) {
		t.Fatalf("JWKS before rotation: %v", got)
	}

	code, list := adminCall(t, http.MethodPost, "/aauth/keys/rotate", `{"owner":"https://rotate.example"}`, h.Resource)
	if code != http.StatusOK || len(list) != 2 || list[0].KID != first || list[1].State != keystore.StateNext || list[0].Retires.IsZero() || list[1].Role != keystore.RoleResource {
		t.Fatalf("list after rotation: %d %+v", code, list)
	}
	if want := time.Until(list[1].Activates); want < 59*time.Minute || want > time.Hour {
		t.Fatalf("the new key activates in %s, want the publish delay (1h)", want)
	}
	next := list[1].KID
	both := []string{first, next}
	slices.Sort(both)
	if got := jwksKIDs(t, h); !slices.Equal(got, both) {
		t.Fatalf("JWKS after rotation: %v, want %v", got, both)
	}
	if s, _ := h.key.Signer(context.Background()); s.Public.KID != first {
		t.Fatal("the new key signs before its publish delay")
	}
}

func TestKeyRotationConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg KeyRotationConfig
		ok  bool
	}{
		{KeyRotationConfig{}, true},
		{KeyRotationConfig{KeyRotation: caddy.Duration(24 * time.Hour)}, true},
		{KeyRotationConfig{KeyRotation: caddy.Duration(time.Hour), KeyPublishDelay: caddy.Duration(time.Second)}, true},
		{KeyRotationConfig{KeyRotation: caddy.Duration(5 * time.Minute)}, false}, // not above the default delay
		{KeyRotationConfig{KeyRotation: caddy.Duration(30 * time.Second), KeyPublishDelay: caddy.Duration(time.Second)}, false},
		{KeyRotationConfig{KeyPublishDelay: caddy.Duration(25 * time.Hour)}, false},
		{KeyRotationConfig{KeyPublishDelay: -1}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.cfg, err)
		}
	}
}
