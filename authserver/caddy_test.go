package authserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestInCaddy runs the handler in a real Caddy (loopback only, admin off, file storage in
// a temporary directory): Provision with the global aauth app and Caddy storage, the
// endpoints over HTTP, and a forced reload that keeps the key and the seen jtis.
func TestInCaddy(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that runs Caddy in process")
	}
	resource := newOrigin(t, "aauth-resource", "resource", "res-key-1")
	agent := newOrigin(t, "aauth-agent", "agent", "agent-key-1")
	port := freePort(t)
	issuer := fmt.Sprintf("http://127.0.0.1:%d", port)
	dir := t.TempDir()
	config := func(lifetime string) []byte {
		return []byte(fmt.Sprintf(`{
			"admin": {"disabled": true, "config": {"persist": false}},
			"storage": {"module": "file_system", "root": %q},
			"logging": {"logs": {"default": {"level": "ERROR"}}},
			"apps": {
				"aauth": {"dev": true},
				"http": {"servers": {"as": {
					"listen": ["127.0.0.1:%d"],
					"automatic_https": {"disable": true},
					"routes": [{"handle": [
						{"handler": "aauth_server", "issuer": %q, "token_lifetime": %q, "policy": {"default": "allow"}},
						{"handler": "static_response", "status_code": 404}
					]}]
				}}}
			}
		}`, dir, port, issuer, lifetime))
	}
	if err := caddy.Load(config("1h"), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	get := func(path string) (int, []byte) {
		t.Helper()
		res, err := http.Get(issuer + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	status, md := get(PathMetadata)
	want := fmt.Sprintf(`{"issuer":%q,"token_endpoint":"%s/token","interaction_endpoint":"%s/interact","jwks_uri":"%s/jwks.json"}`, issuer, issuer, issuer, issuer)
	if status != 200 || string(md) != want {
		t.Fatalf("metadata %d %s", status, md)
	}
	if status, _ := get("/elsewhere"); status != 404 {
		t.Fatalf("other path: %d", status)
	}
	jwks := func() *keys.PublicKey {
		t.Helper()
		_, b := get(PathJWKS)
		var set struct{ Keys []map[string]any }
		if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) != 1 {
			t.Fatalf("jwks %s", b)
		}
		k, err := keys.FromAny(set.Keys[0])
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k1 := jwks()
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(keystore.LayoutOf(keystore.RoleIssuer, issuer).KeyringKey()))); err != nil {
		t.Fatalf("signing key not in storage: %v", err)
	}

	now := time.Now()
	rt, err := token.Mint(resource.Signer, token.TypResource, token.Claims{
		Issuer: resource.ID, Audience: token.Audience{issuer}, ID: token.NewID(),
		IssuedAt: now.Unix(), Expiry: now.Add(5 * time.Minute).Unix(),
		Agent: agent.ID, AgentJKT: agent.Signer.Public.Thumbprint, Scope: "data.read",
	})
	if err != nil {
		t.Fatal(err)
	}
	post := func() (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, issuer+PathToken, strings.NewReader(body(rt)))
		req.Header.Set("Content-Type", "application/json")
		if err := httpsig.Sign(req, agent.Signer, jwksKey(agent), bodyOptions(t, req, httpsig.SignOptions{})); err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return res.StatusCode, out
	}
	status, out := post()
	if status != 200 {
		t.Fatalf("token: %d %v", status, out)
	}
	raw, _ := out["auth_token"].(string)
	if _, err := token.VerifyAuthToken(context.Background(), raw, token.Options{Now: time.Now(), Audience: resource.ID},
		func(context.Context, string, string) (*keys.PublicKey, error) { return k1, nil }); err != nil {
		t.Fatalf("auth token: %v", err)
	}

	// Reload with a changed config: same key, and the used jti stays used.
	if err := caddy.Load(config("30m"), true); err != nil {
		t.Fatal(err)
	}
	if k2 := jwks(); k2.KID != k1.KID || k2.Thumbprint != k1.Thumbprint {
		t.Fatalf("key changed across reload: %s → %s", k1.KID, k2.KID)
	}
	if status, out := post(); status != 400 || out["error_description"] != "resource token already used" {
		t.Fatalf("replay after reload: %d %v", status, out)
	}

	// A token_lifetime over 1h without allow_long_tokens does not load.
	err = caddy.Load(config("2h"), true)
	if err == nil || !strings.Contains(err.Error(), "allow_long_tokens") {
		t.Fatalf("long lifetime: %v", err)
	}
}

// TestInCaddyConsent runs the consent flow in a real Caddy: 202, a long poll capped by
// max_poll_wait, the HTML flow over HTTP, the token, and the grants admin API.
func TestInCaddyConsent(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that runs Caddy in process")
	}
	resource := newOrigin(t, "aauth-resource", "resource", "res-key-1")
	agent := newOrigin(t, "aauth-agent", "agent", "agent-key-1")
	port, adminPort := freePort(t), freePort(t)
	issuer := fmt.Sprintf("http://127.0.0.1:%d", port)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	alice := testUsers(t)[0]
	cfg := fmt.Sprintf(`{
		"admin": {"listen": "127.0.0.1:%d", "config": {"persist": false}},
		"storage": {"module": "file_system", "root": %q},
		"logging": {"logs": {"default": {"level": "ERROR"}}},
		"apps": {
			"aauth": {"dev": true},
			"http": {"servers": {"as": {
				"listen": ["127.0.0.1:%d"],
				"automatic_https": {"disable": true},
				"routes": [{"handle": [
					{"handler": "aauth_server", "issuer": %q, "max_poll_wait": "1s",
					 "users": [{"name": %q, "hash": %q}], "policy": {"default": "consent"}},
					{"handler": "static_response", "status_code": 404}
				]}]
			}}}
		}
	}`, adminPort, t.TempDir(), port, issuer, alice.Name, alice.Hash)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	now := time.Now()
	rt, err := token.Mint(resource.Signer, token.TypResource, token.Claims{
		Issuer: resource.ID, Audience: token.Audience{issuer}, ID: token.NewID(),
		IssuedAt: now.Unix(), Expiry: now.Add(5 * time.Minute).Unix(),
		Agent: agent.ID, AgentJKT: agent.Signer.Public.Thumbprint, Scope: "data.write",
	})
	if err != nil {
		t.Fatal(err)
	}
	signed := func(method, url, body string, hdr ...string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if err := httpsig.Sign(req, agent.Signer, jwksKey(agent), bodyOptions(t, req, httpsig.SignOptions{})); err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return res, out
	}
	res, out := signed(http.MethodPost, issuer+PathToken, body(rt))
	if res.StatusCode != http.StatusAccepted || res.Header.Get("Aauth") == "" {
		t.Fatalf("token: %d %v %v", res.StatusCode, res.Header, out)
	}
	loc, code := out["location"].(string), out["code"].(string)

	start := time.Now()
	res, _ = signed(http.MethodGet, loc, "", "Prefer", "wait=30")
	if res.StatusCode != http.StatusAccepted || res.Header.Get("Preference-Applied") != "wait=1" || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("long poll: %d %v after %v", res.StatusCode, res.Header, time.Since(start))
	}

	jar, _ := cookiejar.New(nil)
	b := &browser{t: t, base: issuer, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	p := b.get("/interact?code=" + code)
	p = b.post(PathInteract, url.Values{"action": {"login"}, "csrf": {p.csrf()}, "code": {code}, "username": {alice.Name}, "password": {alice.Name + "-pw"}})
	if p.Status != http.StatusSeeOther {
		t.Fatalf("login: %d", p.Status)
	}
	p = b.get(p.Header.Get("Location"))
	if p = b.decide(p, code, "approve", "remember", "1"); p.Status != http.StatusOK {
		t.Fatalf("approve: %d %s", p.Status, p.Body)
	}
	res, out = signed(http.MethodGet, loc, "")
	if res.StatusCode != http.StatusOK || out["auth_token"] == nil {
		t.Fatalf("token after consent: %d %v", res.StatusCode, out)
	}

	adminRes, err := http.Get(admin + "/aauth/grants")
	if err != nil {
		t.Fatal(err)
	}
	var grants []GrantInfo
	_ = json.NewDecoder(adminRes.Body).Decode(&grants)
	adminRes.Body.Close()
	if adminRes.StatusCode != 200 || len(grants) != 1 || grants[0].Issuer != issuer || grants[0].User != alice.Name {
		t.Fatalf("admin list: %d %+v", adminRes.StatusCode, grants)
	}
	req, _ := http.NewRequest(http.MethodDelete, admin+"/aauth/grants/"+grants[0].ID, nil)
	adminRes, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	adminRes.Body.Close()
	if adminRes.StatusCode != http.StatusNoContent {
		t.Fatalf("admin revoke: %d", adminRes.StatusCode)
	}
}
