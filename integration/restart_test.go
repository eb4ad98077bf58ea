package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// restartEnv runs the built caddy binary on loopback ports with file storage, so a test
// can stop it and start it again on the same state.
type restartEnv struct {
	bin, dir, config string
	env              []string
	apiID, authID    string
	proc             *process
}

func newRestartEnv(t *testing.T, site func(e *restartEnv) string) *restartEnv {
	if testing.Short() {
		t.Skip("-short: skipping a test that builds and restarts the caddy binary")
	}
	root := moduleRoot(t)
	e := &restartEnv{dir: t.TempDir()}
	e.bin = filepath.Join(e.dir, "caddy")
	goBuild(t, root, e.bin, "./cmd/caddy")
	e.apiID = "http://localhost:" + freePort(t)
	e.authID = "http://127.0.0.1:" + freePort(t)
	state := filepath.Join(e.dir, "state")
	for _, d := range []string{"data", "config", "home"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	e.env = []string{"XDG_DATA_HOME=" + filepath.Join(state, "data"), "XDG_CONFIG_HOME=" + filepath.Join(state, "config"), "HOME=" + filepath.Join(state, "home")}
	e.config = filepath.Join(e.dir, "Caddyfile")
	cfg := fmt.Sprintf("{\n\tadmin off\n\tstorage file_system %s\n\taauth {\n\t\tdev\n\t}\n}\n\n%s", filepath.Join(e.dir, "storage"), site(e))
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *restartEnv) start(t *testing.T) {
	t.Helper()
	e.proc = startProcess(t, "caddy", e.dir, e.env, e.bin, "run", "--config", e.config, "--adapter", "caddyfile")
	waitCaddy(t, e.proc, e.authID+"/.well-known/aauth-issuer.json")
}

func kids(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS at %s: %v %s", url, err, b)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Kid)
	}
	slices.Sort(out)
	return out
}

// allowSites is a gateway site with an auth-token route (scope data.read) in front of
// backend, and an auth server that allows every request.
func allowSites(backend string) func(e *restartEnv) string {
	return func(e *restartEnv) string {
		return fmt.Sprintf(`%s {
	aauth {
		require auth-token
		resource %s
		auth_server %s
		scope data.read
	}
	reverse_proxy %s
}

%s {
	aauth_server {
		issuer %s
		policy {
			default allow
		}
	}
}
`, e.apiID, e.apiID, e.authID, backend, e.authID, e.authID)
	}
}

func TestRestartKeepsKeysAndTokens(t *testing.T) {
	backend := newEchoBackend(t)
	agentSrv := newAgentServer(t)
	e := newRestartEnv(t, allowSites(backend.addr()))
	e.start(t)
	resJWKS, asJWKS := e.apiID+"/.well-known/aauth-resource/jwks.json", e.authID+"/jwks.json"
	resKids, asKids := kids(t, resJWKS), kids(t, asJWKS)

	cache := agent.NewTokenCache(10)
	tr := &agent.Transport{Identity: agent.JWKSURI(agentSrv.signer, agentSrv.id), Dev: true, TokenCache: cache}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Get(e.apiID + "/data")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("before restart: status %d", resp.StatusCode)
	}
	cached, ok := cache.Get(e.apiID, agentSrv.signer.Public.Thumbprint)
	if !ok {
		t.Fatal("no auth token cached")
	}

	e.proc.stop(t)
	e.start(t)

	if got := kids(t, resJWKS); !slices.Equal(got, resKids) {
		t.Fatalf("resource kids changed across the restart: %v -> %v", resKids, got)
	}
	if got := kids(t, asJWKS); !slices.Equal(got, asKids) {
		t.Fatalf("auth server kids changed across the restart: %v -> %v", asKids, got)
	}
	// The token from before the restart, presented as is (no token flow), is accepted.
	plain := &http.Client{Timeout: 10 * time.Second, Transport: &agent.Transport{Identity: agent.AuthToken(agentSrv.signer, cached.Token), Dev: true, ManualAuthToken: true}}
	resp, err = plain.Get(e.apiID + "/after")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("token from before the restart refused: %d %s", resp.StatusCode, body)
	}
	var echo echoed
	_ = json.Unmarshal(body, &echo)
	if echo.Header["X-Aauth-Level"][0] != "authorized" {
		t.Fatalf("backend saw %v", echo.Header)
	}
}

// TestValidateWritesNothing: `caddy validate` provisions every handler but must not
// write to storage; `caddy run` on the same config then creates the resource and auth
// server signing keys and the interaction key when it starts, before any request needs
// them.
func TestValidateWritesNothing(t *testing.T) {
	backend := newEchoBackend(t)
	e := newRestartEnv(t, allowSites(backend.addr()))
	storage := filepath.Join(e.dir, "storage")
	files := func(root string) []string {
		var out []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	v := startProcess(t, "caddy validate", e.dir, e.env, e.bin, "validate", "--config", e.config, "--adapter", "caddyfile")
	<-v.done
	if v.err != nil {
		t.Fatalf("caddy validate: %v\n%s", v.err, v.out.String())
	}
	if got := files(storage); len(got) != 0 {
		t.Fatalf("caddy validate wrote to storage: %v", got)
	}
	for _, f := range files(filepath.Join(e.dir, "state")) {
		if strings.Contains(f, "aauth") {
			t.Fatalf("caddy validate wrote %s", f)
		}
	}

	e.start(t)
	want := []string{
		keystore.LayoutOf(keystore.RoleResource, e.apiID).KeyringKey(),
		keystore.LayoutOf(keystore.RoleIssuer, e.authID).KeyringKey(),
		keystore.LayoutOf(keystore.RoleIssuer, e.authID).InteractKey(),
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, k := range want {
		for {
			if _, err := os.Stat(filepath.Join(storage, filepath.FromSlash(k))); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("caddy run did not create %s: %v (storage holds %v)", k, err, files(storage))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
