package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// The on-disk token cache keeps the auth tokens a command obtained, so the next command
// signing with the same key sends them straight away (no token request, no second
// consent) until they expire, and refreshes them after that (draft-hardt-aauth §11.6;
// the agent library refreshes an expired token it finds in its cache). Each key has its
// own file, named by its RFC 7638 thumbprint, in a folder only the user can read:
// the tokens are bound to the key (cnf.jwk) and useless without it, but still secret.

// cacheFileVersion is the format of a cache file.
const cacheFileVersion = 1

// thumbprintRE is what a file name taken from a thumbprint may look like (base64url).
var thumbprintRE = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)

// cacheFile is the JSON of one key's cache file.
type cacheFile struct {
	Version int          `json:"version"`
	Tokens  []cacheEntry `json:"tokens"`
}

// cacheEntry is one cached auth token.
type cacheEntry struct {
	Resource string    `json:"resource"`
	Issuer   string    `json:"issuer"`
	Scope    string    `json:"scope"`
	Expires  time.Time `json:"expires"`
	Token    string    `json:"token"`
}

// cacheDir is the token cache folder: $AAUTH_CACHE_DIR, else aauth in the user's cache
// folder ($XDG_CACHE_HOME, usually ~/.cache, on Linux).
func cacheDir() (string, error) {
	if d := os.Getenv(envCacheDir); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "aauth"), nil
}

// cacheDisabledByEnv reports whether AAUTH_NO_CACHE turns the cache off.
func cacheDisabledByEnv() bool {
	v := os.Getenv(envNoCache)
	return v != "" && v != "0" && !strings.EqualFold(v, "false")
}

// diskCache is the cache file of one key, loaded into an agent.TokenCache for one
// command and written back after it.
type diskCache struct {
	path   string
	jkt    string
	now    func() time.Time
	loaded []agent.CachedToken

	mu      sync.Mutex
	origins map[string]bool // the origins requests went to: where new tokens may be
	refused map[string]bool // loaded tokens a resource answered 401 to
}

// openDiskCache reads the cache file of the key whose thumbprint is jkt (a missing or
// unreadable file is an empty cache) and returns it with a TokenCache holding its tokens.
// Without dev, tokens of http:// or loopback resources and issuers (cached by a command
// with -dev) stay on disk but are not used: such a command would refuse to get them.
func openDiskCache(dir, jkt string, dev bool) (*diskCache, *agent.TokenCache, error) {
	if !thumbprintRE.MatchString(jkt) {
		return nil, nil, fmt.Errorf("key thumbprint %q cannot name a cache file", jkt)
	}
	d := &diskCache{path: filepath.Join(dir, jkt+".json"), jkt: jkt, now: time.Now,
		origins: map[string]bool{}, refused: map[string]bool{}}
	d.loaded = d.read()
	tc := agent.NewTokenCache(0)
	for _, ct := range d.loaded { // oldest first, so the newest is the one Get prefers
		if discovery.ValidateIdentifier(ct.Resource, dev) == nil && discovery.ValidateIdentifier(ct.Issuer, dev) == nil {
			tc.Put(ct)
		}
	}
	return d, tc, nil
}

// read returns the file's tokens that are not past their refresh window, ordered by
// expiry. A missing or malformed file holds none.
func (d *diskCache) read() []agent.CachedToken {
	b, err := os.ReadFile(d.path)
	if err != nil {
		return nil
	}
	var f cacheFile
	if json.Unmarshal(b, &f) != nil || f.Version != cacheFileVersion {
		return nil
	}
	now := d.now()
	var out []agent.CachedToken
	for _, e := range f.Tokens {
		if e.Resource == "" || e.Token == "" || now.After(e.Expires.Add(agent.RefreshWindow)) {
			continue
		}
		out = append(out, agent.CachedToken{Resource: e.Resource, KeyJKT: d.jkt, Issuer: e.Issuer,
			Scope: e.Scope, Expiry: e.Expires, Token: e.Token})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Expiry.Before(out[j].Expiry) })
	return out
}

// wrap returns a RoundTripper that notes where requests go and which loaded tokens a
// resource refused (401 to a request carrying one), so save drops them.
func (d *diskCache) wrap(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		d.mu.Lock()
		d.origins[agent.Origin(req.URL)] = true
		d.mu.Unlock()
		sigKey := req.Header.Get("Signature-Key")
		resp, err := base.RoundTrip(req)
		if err == nil && resp.StatusCode == http.StatusUnauthorized && sigKey != "" {
			wanted, scoped := challengedScope(resp.Header)
			d.mu.Lock()
			for _, ct := range d.loaded {
				// A token refused because the route wants another scope stays cached
				// for the routes it is good for.
				if strings.Contains(sigKey, ct.Token) && (!scoped || wanted == ct.Scope) {
					d.refused[ct.Token] = true
				}
			}
			d.mu.Unlock()
		}
		return resp, err
	})
}

// challengedScope is the scope of the resource token in an auth-token challenge, read
// without verification (only to tell "wrong scope" from "bad token").
func challengedScope(h http.Header) (string, bool) {
	c, ok := agent.ParseChallenge(h)
	if !ok || c.ResourceToken == "" {
		return "", false
	}
	rt, err := token.Parse(c.ResourceToken, token.TypResource)
	if err != nil {
		return "", false
	}
	return rt.Claims.Scope, true
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// save writes the file back: what it holds now (another command may have added tokens
// meanwhile), the tokens of this command (tc's usable token for each resource it talked
// to, and extra), less the tokens a resource refused; per resource and scope only the
// one expiring last. The write is atomic (a 0600 temporary file renamed over the file)
// in a 0700 folder.
func (d *diskCache) save(tc *agent.TokenCache, extra ...agent.CachedToken) error {
	d.mu.Lock()
	resources := map[string]bool{}
	for o := range d.origins {
		resources[o] = true
	}
	refused := d.refused
	d.mu.Unlock()
	all := append(d.read(), d.loaded...)
	for _, ct := range d.loaded {
		resources[ct.Resource] = true
	}
	for r := range resources {
		if ct, ok := tc.Get(r, d.jkt); ok {
			all = append(all, ct)
		}
	}
	all = append(all, extra...)
	type key struct{ resource, scope string }
	best := map[key]agent.CachedToken{}
	for _, ct := range all {
		k := key{ct.Resource, ct.Scope}
		if refused[ct.Token] || ct.KeyJKT != d.jkt || ct.Token == "" {
			continue
		}
		if old, ok := best[k]; !ok || ct.Expiry.After(old.Expiry) {
			best[k] = ct
		}
	}
	f := cacheFile{Version: cacheFileVersion, Tokens: []cacheEntry{}}
	now := d.now()
	for _, ct := range best {
		if now.After(ct.Expiry.Add(agent.RefreshWindow)) {
			continue
		}
		f.Tokens = append(f.Tokens, cacheEntry{Resource: ct.Resource, Issuer: ct.Issuer, Scope: ct.Scope, Expires: ct.Expiry.UTC(), Token: ct.Token})
	}
	sort.Slice(f.Tokens, func(i, j int) bool {
		a, b := f.Tokens[i], f.Tokens[j]
		return a.Resource < b.Resource || a.Resource == b.Resource && a.Scope < b.Scope
	})
	if len(f.Tokens) == 0 && len(d.loaded) == 0 {
		return nil // nothing was cached and nothing is: leave the disk alone
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeCacheFile(d.path, append(b, '\n'))
}

// writeCacheFile makes the folder (0700, tightened when it exists) and writes the file
// atomically with mode 0600.
func writeCacheFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	return writeSecret(path, data, true)
}

// clearCache removes every cache file (or, with jkt, that key's) and reports how many.
func clearCache(dir, jkt string) (int, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range names {
		base := strings.TrimSuffix(filepath.Base(p), ".json")
		if !thumbprintRE.MatchString(base) || (jkt != "" && base != jkt) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
		n++
	}
	return n, nil
}

const cacheUsage = `usage: aauth cache dir
       aauth cache clear [-key FILE]

The token cache keeps the auth tokens aauth fetch obtained, one file per signing key
(named by its RFC 7638 thumbprint, mode 0600) in a folder only you can read (0700):
$AAUTH_CACHE_DIR, else aauth in the user cache folder ($XDG_CACHE_HOME/aauth, usually
~/.cache/aauth, on Linux). "dir" prints the folder; "clear" removes every file, or with
-key only that key's. Removing the folder by hand is as good. The tokens are never
printed.
`

func cmdCache(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageError(stderr, "cache", "want dir or clear")
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("cache", cacheUsage, stderr)
	var keyFile string
	if sub == "clear" {
		fs.StringVar(&keyFile, "key", "", "remove only the tokens of this private JWK file's key")
	}
	pos, code, ok := parseFlags(fs, rest)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(stderr, "cache", "unexpected argument %q", pos[0])
	}
	dir, err := cacheDir()
	if err != nil {
		return failf(stderr, "cache", "%v", err)
	}
	switch sub {
	case "dir":
		fmt.Fprintln(stdout, dir)
		return exitOK
	case "clear":
	case "-h", "-help", "--help", "help":
		fs.Usage()
		return exitOK
	default:
		return usageError(stderr, "cache", "unknown subcommand %q (want dir or clear)", sub)
	}
	jkt := ""
	if keyFile != "" {
		s, err := loadSigner(keyFile)
		if err != nil {
			return failf(stderr, "cache", "%v", err)
		}
		jkt = s.Public.Thumbprint
	}
	n, err := clearCache(dir, jkt)
	if err != nil {
		return failf(stderr, "cache", "%v", err)
	}
	fmt.Fprintf(stderr, "aauth cache: removed %d cache file(s) from %s\n", n, dir)
	return exitOK
}
