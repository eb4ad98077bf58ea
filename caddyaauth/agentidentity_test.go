package caddyaauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

func TestAgentIdentityValidate(t *testing.T) {
	base := func(mod func(*Handler)) Handler {
		h := Handler{Require: RequireAuthToken, Resource: "https://api.example", AuthServer: "https://as.example"}
		mod(&h)
		return h
	}
	for _, tc := range []struct {
		name string
		h    Handler
		err  string
	}{
		{"resource_key", base(func(h *Handler) { h.AgentIdentity = AgentKeyResource }), ""},
		{"own_key", base(func(h *Handler) { h.AgentIdentity = AgentKeyOwn }), ""},
		{"egress alone", base(func(h *Handler) { h.Egress = true }), ""},
		{"egress with own_key", base(func(h *Handler) { h.Egress, h.AgentIdentity = true, AgentKeyOwn }), ""},
		{"unknown key", base(func(h *Handler) { h.AgentIdentity = "some_key" }), "agent_identity: unknown key"},
		{"identity route", Handler{Require: RequireIdentity, AgentIdentity: AgentKeyResource}, "need require auth-token"},
		{"egress on identity route", Handler{Require: RequireIdentity, Egress: true}, "need require auth-token"},
		{"handle header renamed", base(func(h *Handler) { h.Egress, h.Headers = true, map[string]string{"handle": "X-Request-Handle"} }), ""},
		{"handle header not X-", base(func(h *Handler) { h.Headers = map[string]string{"handle": "Handle"} }), "must start with X-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Validate()
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestAgentIdentityCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
		egress        bool
	}{
		{in: "agent_identity", want: AgentKeyResource},
		{in: "agent_identity resource_key", want: AgentKeyResource},
		{in: "agent_identity own_key", want: AgentKeyOwn},
		{in: "agent_identity own_key\n egress", want: AgentKeyOwn, egress: true},
		{in: "egress", egress: true},
		{in: "agent_identity other_key", err: "want resource_key or own_key"},
		{in: "agent_identity own_key extra", err: "wrong argument count"},
		{in: "egress now", err: "wrong argument count"},
		{in: "agent_identity\n agent_identity", err: "more than once"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("aauth {\n" + tc.in + "\n}"))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || h.AgentIdentity != tc.want || h.Egress != tc.egress {
			t.Errorf("%q: %v agent_identity %q egress %v", tc.in, err, h.AgentIdentity, h.Egress)
		}
	}
}

// agentIdentityHandler is an auth-token route with an agent identity whose keys live in
// a temporary storage.
func agentIdentityHandler(t *testing.T, identity string) *Handler {
	t.Helper()
	st := &certmagic.FileStorage{Path: t.TempDir()}
	h := &Handler{Require: RequireAuthToken, Resource: "https://api.example", AuthServer: "https://as.example", AgentIdentity: identity}
	h.key = keystore.NewKey(st, keystore.LayoutOf(keystore.RoleResource, h.Resource), keys.AlgEd25519)
	switch identity {
	case AgentKeyResource:
		h.agentKey = h.key
	case AgentKeyOwn:
		h.agentKey = keystore.NewKey(st, keystore.LayoutOf(keystore.RoleAgent, h.Resource), keys.AlgEd25519)
	}
	return h
}

func getWellKnown(t *testing.T, h *Handler, method, path string) (bool, *httptest.ResponseRecorder) {
	t.Helper()
	w := httptest.NewRecorder()
	served, err := h.serveWellKnownPath(w, httptest.NewRequest(method, "https://api.example"+path, nil))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return served, w
}

func TestAgentWellKnown(t *testing.T) {
	for _, identity := range []string{AgentKeyResource, AgentKeyOwn} {
		t.Run(identity, func(t *testing.T) {
			h := agentIdentityHandler(t, identity)
			for _, p := range []string{PathAgentMetadata, PathAgentMetadataBare} {
				served, w := getWellKnown(t, h, http.MethodGet, p)
				var md wire.AgentMetadata
				if !served || w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &md) != nil {
					t.Fatalf("%s: served %v status %d %s", p, served, w.Code, w.Body)
				}
				if md.Agent != h.Resource || md.JWKSURI != h.Resource+PathAgentJWKS || md.ClientName != "api.example" {
					t.Fatalf("%s: %+v", p, md)
				}
			}
			_, w := getWellKnown(t, h, http.MethodGet, PathAgentJWKS)
			agentSigner, _ := h.agentKey.Signer(context.Background())
			resSigner, _ := h.key.Signer(context.Background())
			if !strings.Contains(w.Body.String(), `"kid":"`+agentSigner.Public.KID+`"`) {
				t.Fatalf("agent JWKS %s lacks kid %s", w.Body, agentSigner.Public.KID)
			}
			if same := agentSigner.Public.Thumbprint == resSigner.Public.Thumbprint; same != (identity == AgentKeyResource) {
				t.Fatalf("agent key is the resource key: %v (identity %s)", same, identity)
			}
			if _, w := getWellKnown(t, h, http.MethodPost, PathAgentMetadata); w.Code != http.StatusMethodNotAllowed {
				t.Fatalf("POST: %d", w.Code)
			}
		})
	}
	t.Run("no agent identity: not served", func(t *testing.T) {
		h := agentIdentityHandler(t, "")
		for _, p := range AgentWellKnownPaths {
			if served, _ := getWellKnown(t, h, http.MethodGet, p); served {
				t.Fatalf("%s served without agent_identity", p)
			}
		}
	})
}
