package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
)

// enableCache turns the token cache on (TestMain turns it off) in a fresh folder.
func enableCache(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cache", "aauth")
	t.Setenv(envNoCache, "")
	t.Setenv(envCacheDir, dir)
	return dir
}

// TestTokenCacheAcrossInvocations: the token the first command obtained is sent by the
// second straight away (no token request); once it has expired, the third refreshes it
// at the auth server (no challenge flow); -no-cache asks anew. The file is 0600 in a 0700
// folder, named by the key thumbprint, and no token is ever printed.
func TestTokenCacheAcrossInvocations(t *testing.T) {
	dir := enableCache(t)
	tb := newTestbed(t)
	as := agenttest.NewAuthServer(t)
	gw := agenttest.NewGateway(t, as.ID, "data.read")
	signer, err := loadSigner(tb.agentKey)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, signer.Public.Thumbprint+".json")
	fetch := func(extra ...string) result {
		t.Helper()
		args := append([]string{"fetch", "-dev", "-v", "-key", tb.agentKey, "-id", tb.agentID}, extra...)
		r := runCLI(t, append(args, gw.ID+"/data")...)
		if r.code != exitOK || !strings.Contains(r.stdout, `"scope":"data.read"`) {
			t.Fatalf("exit %d, stdout %q\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if regexp.MustCompile(`eyJ(hbGci|0eXAi|raWQi|pc3Mi)`).MatchString(r.stdout + r.stderr) {
			t.Fatalf("a token was printed:\n%s%s", r.stdout, r.stderr)
		}
		return r
	}

	fetch()
	if as.Hits() != 1 {
		t.Fatalf("first call: %d token requests, want 1", as.Hits())
	}
	checkCacheFile(t, file)
	gw.Seen()

	r := fetch()
	if as.Hits() != 1 {
		t.Errorf("second call made a token request (%d in all)", as.Hits())
	}
	if seen := gw.Seen(); !slices.Equal(seen, []string{"jwt:auth+jwt"}) {
		t.Errorf("second call: the gateway saw %v, want the cached auth token at once", seen)
	}
	if !strings.Contains(r.stderr, "using the cached auth token") {
		t.Errorf("-v does not say the token came from the cache:\n%s", r.stderr)
	}

	// Expire the cached token: the next command refreshes it (draft-hardt-aauth §11.6).
	setCacheExpiry(t, file, time.Now().Add(-time.Minute))
	fetch()
	if kinds := as.Kinds(); len(kinds) != 2 || kinds[1] != agenttest.KindRefresh {
		t.Errorf("third call: token requests %v, want a refresh", kinds)
	}
	fetch()
	if as.Hits() != 2 {
		t.Errorf("the refreshed token was not cached: %d token requests", as.Hits())
	}

	// Without -dev the tokens of the http:// test servers are not used (nor dropped).
	r = runCLI(t, "fetch", "-key", tb.agentKey, "-id", tb.agentID, gw.ID+"/data")
	if r.code != exitFailure || !strings.Contains(r.stderr, "need -dev") || as.Hits() != 2 {
		t.Errorf("without -dev: exit %d, %d token requests; stderr %q", r.code, as.Hits(), r.stderr)
	}
	fetch()
	if as.Hits() != 2 {
		t.Errorf("the token was dropped by the command without -dev: %d token requests", as.Hits())
	}

	fetch("-no-cache")
	if as.Hits() != 3 {
		t.Errorf("-no-cache: %d token requests, want 3", as.Hits())
	}
	t.Setenv(envNoCache, "1")
	fetch()
	if as.Hits() != 4 {
		t.Errorf("AAUTH_NO_CACHE=1: %d token requests, want 4", as.Hits())
	}
}

// checkCacheFile checks the modes of the file and its folder and that it holds a token.
func checkCacheFile(t *testing.T, file string) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("cache folder mode %v, want 0700", di.Mode().Perm())
	}
	var f cacheFile
	b, _ := os.ReadFile(file)
	if err := json.Unmarshal(b, &f); err != nil || f.Version != cacheFileVersion || len(f.Tokens) != 1 || f.Tokens[0].Scope != "data.read" {
		t.Errorf("cache file %s: %v", b, err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".aauth-*")); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func setCacheExpiry(t *testing.T, file string, exp time.Time) {
	t.Helper()
	var f cacheFile
	b, err := os.ReadFile(file)
	if err == nil {
		err = json.Unmarshal(b, &f)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.Tokens {
		f.Tokens[i].Expires = exp
	}
	b, _ = json.Marshal(f)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTokenCacheRefusedToken: a cached token the resource refuses is dropped from the
// file and replaced by the new one the flow gets.
func TestTokenCacheRefusedToken(t *testing.T) {
	dir := enableCache(t)
	tb := newTestbed(t)
	as := agenttest.NewAuthServer(t)
	gw := agenttest.NewGateway(t, as.ID, "data.read")
	signer, _ := loadSigner(tb.agentKey)
	file := filepath.Join(dir, signer.Public.Thumbprint+".json")
	args := []string{"fetch", "-dev", "-key", tb.agentKey, "-id", tb.agentID, gw.ID + "/data"}
	if r := runCLI(t, args...); r.code != 0 {
		t.Fatal(r.stderr)
	}
	// A token from an earlier auth server key no one trusts now: replace the text.
	var f cacheFile
	b, _ := os.ReadFile(file)
	_ = json.Unmarshal(b, &f)
	good := f.Tokens[0].Token
	f.Tokens[0].Token = good[:len(good)-4] + "AAAA"
	b, _ = json.Marshal(f)
	_ = os.WriteFile(file, b, 0o600)
	if r := runCLI(t, args...); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if as.Hits() != 2 {
		t.Errorf("%d token requests, want 2 (the refused token replaced)", as.Hits())
	}
	var after cacheFile
	b, _ = os.ReadFile(file)
	_ = json.Unmarshal(b, &after)
	if len(after.Tokens) != 1 || after.Tokens[0].Token == f.Tokens[0].Token {
		t.Errorf("the refused token is still cached")
	}
}

// TestCacheCommand: aauth cache dir prints the folder; clear removes the files, all or
// one key's.
func TestCacheCommand(t *testing.T) {
	dir := enableCache(t)
	if r := runCLI(t, "cache", "dir"); r.code != 0 || r.stdout != dir+"\n" {
		t.Errorf("cache dir: %d %q", r.code, r.stdout)
	}
	keyDir := t.TempDir()
	k1, k2 := keygen(t, keyDir, "a.jwk"), keygen(t, keyDir, "b.jwk")
	for _, k := range []string{k1, k2} {
		s, _ := loadSigner(k)
		if err := writeCacheFile(filepath.Join(dir, s.Public.Thumbprint+".json"), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if r := runCLI(t, "cache", "clear", "-key", k1); r.code != 0 || !strings.Contains(r.stderr, "removed 1 cache file") {
		t.Errorf("clear -key: %d %q", r.code, r.stderr)
	}
	if r := runCLI(t, "cache", "clear"); r.code != 0 || !strings.Contains(r.stderr, "removed 1 cache file") {
		t.Errorf("clear: %d %q", r.code, r.stderr)
	}
	if r := runCLI(t, "cache", "nope"); r.code != exitUsage {
		t.Errorf("unknown subcommand: %d", r.code)
	}
	// Without AAUTH_CACHE_DIR the folder is aauth under XDG_CACHE_HOME.
	t.Setenv(envCacheDir, "")
	t.Setenv("XDG_CACHE_HOME", keyDir)
	if d, err := cacheDir(); err != nil || d != filepath.Join(keyDir, "aauth") {
		t.Errorf("cacheDir %q %v", d, err)
	}
}
