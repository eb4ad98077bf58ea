package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// Two Caddy processes (a and b) on one file_system storage, each serving the same auth
// server (issuer: a balancer in front of both) and the same gateway (resource: another
// balancer), with short lifetimes so a rotation runs its course in about a minute.

const (
	rotTokenLifetime = 5 * time.Second
	rotPublishDelay  = 2 * time.Second
)

type rotationEnv struct {
	dir, bin     string
	asID, apiID  string // the balancers: issuer and resource identifiers
	as, api      [2]string
	admin, files [2]string
	procs        [2]*process
	env          [2][]string
	agentSrv     *agentServer
	rrAS, rrAPI  atomic.Uint64
}

func startRotationCluster(t *testing.T) *rotationEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test that builds and runs two caddy processes")
	}
	e := &rotationEnv{dir: t.TempDir(), agentSrv: newAgentServer(t)}
	e.bin = filepath.Join(e.dir, "caddy")
	goBuild(t, moduleRoot(t), e.bin, "./cmd/caddy")
	backend := newEchoBackend(t)
	e.asID = newBalancer(t, &e.rrAS, func(i int) string { return e.as[i] })
	e.apiID = newBalancer(t, &e.rrAPI, func(i int) string { return e.api[i] })
	for i := range 2 {
		e.as[i], e.api[i] = "http://127.0.0.1:"+freePort(t), "http://127.0.0.1:"+freePort(t)
		e.admin[i] = "http://localhost:" + freePort(t)
		e.writeConfig(t, i, backend.addr())
		e.start(t, i)
	}
	return e
}

func (e *rotationEnv) writeConfig(t *testing.T, i int, backend string) {
	home := filepath.Join(e.dir, fmt.Sprintf("home%d", i))
	for _, d := range []string{"data", "config"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	e.env[i] = []string{"XDG_DATA_HOME=" + filepath.Join(home, "data"), "XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "HOME=" + home}
	port := func(u string) string { return u[strings.LastIndex(u, ":")+1:] }
	cfg := fmt.Sprintf(`{
	admin %s
	storage file_system %s
	log {
		level DEBUG
		include events
	}
	aauth {
		dev
	}
}

http://:%s {
	aauth_server {
		issuer %s
		token_lifetime %s
		key_publish_delay %s
		token_rate_limit off
		policy {
			default allow
		}
	}
}

http://:%s {
	aauth {
		require auth-token
		resource %s
		auth_server %s
		scope data.read
		resource_token_lifetime %s
		key_publish_delay %s
	}
	reverse_proxy %s
}
`, strings.TrimPrefix(e.admin[i], "http://"), filepath.Join(e.dir, "storage"), port(e.as[i]), e.asID, rotTokenLifetime, rotPublishDelay,
		port(e.api[i]), e.apiID, e.asID, rotTokenLifetime, rotPublishDelay, backend)
	e.files[i] = filepath.Join(e.dir, fmt.Sprintf("Caddyfile%d", i))
	if err := os.WriteFile(e.files[i], []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *rotationEnv) start(t *testing.T, i int) {
	e.procs[i] = startProcess(t, "caddy-"+"ab"[i:i+1], e.dir, e.env[i], e.bin, "run", "--config", e.files[i], "--adapter", "caddyfile")
	waitHTTP(t, e.procs[i], e.as[i]+"/.well-known/aauth-issuer.json", 30*time.Second)
}

// keysAdmin calls the keys admin API of instance i.
func (e *rotationEnv) keysAdmin(t *testing.T, i int, method, path, body string) []keystore.Info {
	t.Helper()
	req, _ := http.NewRequest(method, e.admin[i]+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s on %d: %d %s", method, path, i, resp.StatusCode, b)
	}
	var out []keystore.Info
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// token runs the token flow through instance (a or b) with a fresh cache and returns
// the auth token.
func (e *rotationEnv) token(t *testing.T, instance string) string {
	t.Helper()
	cache := agent.NewTokenCache(4)
	tr := &agent.Transport{Identity: agent.JWKSURI(e.agentSrv.signer, e.agentSrv.id), Dev: true, TokenCache: cache,
		Base: pinned{base: http.DefaultTransport, instance: instance}}
	resp := get(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, e.apiID+"/data")
	resp.mustStatus(t, http.StatusOK)
	// The cache hands out tokens only well before expiry; ours live seconds.
	cache.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	c, ok := cache.Get(e.apiID, e.agentSrv.signer.Public.Thumbprint)
	if !ok {
		t.Fatal("no auth token cached")
	}
	return c.Token
}

// present sends the auth token as is (no token flow) to the gateway on instance.
func (e *rotationEnv) present(t *testing.T, tok, instance string) int {
	t.Helper()
	tr := &agent.Transport{Identity: agent.AuthToken(e.agentSrv.signer, tok), Dev: true, ManualAuthToken: true,
		Base: pinned{base: http.DefaultTransport, instance: instance}}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(e.apiID + "/data")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// tokenKID is the kid in a JWT's header.
func tokenKID(t *testing.T, tok string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	var h struct {
		Kid string `json:"kid"`
	}
	if err != nil || json.Unmarshal(b, &h) != nil {
		t.Fatalf("token header: %v", err)
	}
	return h.Kid
}

// rotated finds, in a list after rotation, the keys of owner: the one retiring and the
// next one.
func rotated(t *testing.T, list []keystore.Info, owner string) (old, next keystore.Info) {
	t.Helper()
	for _, in := range list {
		switch {
		case in.Owner != owner:
		case in.State == keystore.StateNext:
			next = in
		case !in.Retires.IsZero():
			old = in
		}
	}
	if old.KID == "" || next.KID == "" {
		t.Fatalf("no old and next key of %s in %+v", owner, list)
	}
	return old, next
}

// TestKeyRotationAcrossTwoInstances: a rotation through instance a's admin API. A token
// signed before it verifies on a and b after it; b publishes the new keys before they
// sign; a token signed by the new key verifies at once on both; the old key leaves both
// JWKS only after its last token expired; a reload keeps the keyring.
func TestKeyRotationAcrossTwoInstances(t *testing.T) {
	e := startRotationCluster(t)
	asJWKS, resJWKS := "/jwks.json", "/.well-known/aauth-resource/jwks.json"
	before := e.token(t, "a")
	if !slices.Equal(kids(t, e.as[1]+asJWKS), []string{tokenKID(t, before)}) {
		t.Fatal("the instances do not share the issuer key")
	}

	list := e.keysAdmin(t, 0, http.MethodPost, "/aauth/keys/rotate", "")
	oldAS, nextAS := rotated(t, list, e.asID)
	oldRes, nextRes := rotated(t, list, e.apiID)
	if oldAS.KID != tokenKID(t, before) {
		t.Fatalf("rotated away from %s, the token was signed by %s", oldAS.KID, tokenKID(t, before))
	}
	if minRetire := nextAS.Activates.Add(rotTokenLifetime + keystore.ClockSkew); oldAS.Retires.Before(minRetire) {
		t.Fatalf("old issuer key retires at %s, before its last token can expire (%s)", oldAS.Retires, minRetire)
	}
	for i, inst := range []string{"a", "b"} {
		if code := e.present(t, before, inst); code != http.StatusOK {
			t.Fatalf("a token signed before the rotation is refused on %s: %d", inst, code)
		}
		// b reads the keyring again within a quarter of the publish delay: both keys are
		// published before the new one signs.
		for _, w := range []struct {
			path      string
			old, next keystore.Info
		}{{e.as[i] + asJWKS, oldAS, nextAS}, {e.api[i] + resJWKS, oldRes, nextRes}} {
			waitKIDs(t, w.path, []string{w.old.KID, w.next.KID}, w.next.Activates)
		}
	}
	if b := e.keysAdmin(t, 1, http.MethodGet, "/aauth/keys", ""); !slices.ContainsFunc(b, func(in keystore.Info) bool { return in.KID == nextAS.KID }) {
		t.Fatalf("instance b does not list a's new key: %+v", b)
	}

	time.Sleep(time.Until(nextAS.Activates.Add(100 * time.Millisecond)))
	for _, inst := range []string{"a", "b"} {
		after := e.token(t, inst)
		if tokenKID(t, after) != nextAS.KID {
			t.Fatalf("after activation %s signs with %s, want %s", inst, tokenKID(t, after), nextAS.KID)
		}
		for _, on := range []string{"a", "b"} {
			if code := e.present(t, after, on); code != http.StatusOK {
				t.Fatalf("a token of the new key (from %s) is refused on %s: %d", inst, on, code)
			}
		}
	}
	e.reloadKeepsKeyring(t, list)
	e.oldKeysRetire(t, []keystore.Info{oldAS, oldRes}, map[string]string{oldAS.KID: asJWKS, oldRes.KID: resJWKS})
	e.eventEmitted(t, nextAS.KID, oldAS.KID)
}

// waitKIDs waits until url publishes every kid of want, failing if that is not so before
// deadline.
func waitKIDs(t *testing.T, url string, want []string, deadline time.Time) {
	t.Helper()
	for {
		got := kids(t, url)
		if !slices.ContainsFunc(want, func(k string) bool { return !slices.Contains(got, k) }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s publishes %v, not %v, when the new key activates", url, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reloadKeepsKeyring reloads instance a's config and checks its keys are those of list.
func (e *rotationEnv) reloadKeepsKeyring(t *testing.T, list []keystore.Info) {
	t.Helper()
	p := startProcess(t, "caddy reload", e.dir, e.env[0], e.bin, "reload", "--config", e.files[0], "--adapter", "caddyfile", "--address", strings.TrimPrefix(e.admin[0], "http://"), "--force")
	<-p.done
	if p.err != nil {
		t.Fatalf("caddy reload: %v\n%s", p.err, p.out.String())
	}
	kidsOf := func(l []keystore.Info) []string {
		var out []string
		for _, in := range l {
			out = append(out, in.Owner+" "+in.KID)
		}
		slices.Sort(out)
		return out
	}
	if got := kidsOf(e.keysAdmin(t, 0, http.MethodGet, "/aauth/keys", "")); !slices.Equal(got, kidsOf(list)) {
		t.Fatalf("the reload changed the keyrings: %v, want %v", got, kidsOf(list))
	}
}

// oldKeysRetire checks each old key stays in both instances' JWKS until its retire time
// and leaves it then.
func (e *rotationEnv) oldKeysRetire(t *testing.T, old []keystore.Info, paths map[string]string) {
	t.Helper()
	for _, k := range old {
		bases := e.as
		if k.Owner == e.apiID {
			bases = e.api
		}
		for time.Until(k.Retires) > 500*time.Millisecond {
			for _, b := range bases {
				if !slices.Contains(kids(t, b+paths[k.KID]), k.KID) {
					t.Fatalf("%s left %s %s before its retire time %s", k.KID, b, paths[k.KID], k.Retires)
				}
			}
			time.Sleep(min(time.Until(k.Retires)-400*time.Millisecond, 5*time.Second))
		}
		time.Sleep(time.Until(k.Retires.Add(500 * time.Millisecond)))
		for _, b := range bases {
			if slices.Contains(kids(t, b+paths[k.KID]), k.KID) {
				t.Fatalf("%s still in %s %s after its retire time %s", k.KID, b, paths[k.KID], k.Retires)
			}
		}
	}
}

// eventEmitted checks instance a logged the aauth_key_rotated event of the issuer key,
// with no private key material.
func (e *rotationEnv) eventEmitted(t *testing.T, newKID, oldKID string) {
	t.Helper()
	out := e.procs[0].out.String()
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"name":"aauth_key_rotated"`) && strings.Contains(line, `"new_kid":"`+newKID+`"`) {
			if !strings.Contains(line, `"old_kid":"`+oldKID+`"`) || !strings.Contains(line, `"role":"issuer"`) || strings.Contains(line, `"d":`) {
				t.Fatalf("event line %s", line)
			}
			if strings.Contains(e.procs[1].out.String(), "aauth_key_rotated") {
				t.Fatal("instance b emitted an event for a's rotation")
			}
			return
		}
	}
	t.Fatalf("no aauth_key_rotated event for %s in a's log", newKID)
}
