package keystore

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// clock is a settable time source shared by the Keys of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// keyAt is a Key on st with clock c and policy p.
func keyAt(st certmagic.Storage, l Layout, c *clock, p Policy) *Key {
	k := NewKey(st, l, keys.AlgEd25519)
	k.now, k.base = c.now, p
	return k
}

func kids(t *testing.T, k *Key) []string {
	t.Helper()
	pubs, err := k.Published(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pubs {
		out = append(out, p.KID)
	}
	slices.Sort(out)
	return out
}

func signerKID(t *testing.T, k *Key) string {
	t.Helper()
	s, err := k.Signer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.Public.KID
}

func TestFirstUseIsStableAndRaceFree(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	l := LayoutOf(RoleResource, "https://api.example")
	var wg sync.WaitGroup
	got := make([]string, 5)
	for i := range got {
		wg.Go(func() {
			s, err := NewKey(st, l, keys.AlgEd25519).Signer(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = s.Public.KID
		})
	}
	wg.Wait()
	for _, k := range got {
		if k == "" || k != got[0] {
			t.Fatalf("concurrent first starts disagree: %v", got)
		}
	}
	other, err := NewKey(st, LayoutOf(RoleIssuer, "https://api.example"), keys.AlgECDSAP256).Signer(context.Background())
	if err != nil || other.Public.KID == got[0] || other.Public.Alg() != keys.AlgECDSAP256 {
		t.Fatalf("roles must not share keys: %v", err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(JWKS(other.Public), &set); err != nil || len(set.Keys) != 1 || set.Keys[0]["d"] != nil {
		t.Fatalf("JWKS %v %v", set, err)
	}
}

func TestKeyIsLazy(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	l := LayoutOf(RoleIssuer, "https://as.example")
	k := NewKey(st, l, keys.AlgEd25519)
	if st.Exists(context.Background(), l.KeyringKey()) {
		t.Fatal("NewKey wrote to storage")
	}
	kid := signerKID(t, k)
	if !st.Exists(context.Background(), l.KeyringKey()) {
		t.Fatal("first use did not store the keyring")
	}
	if again := signerKID(t, NewKey(st, l, keys.AlgEd25519)); again != kid {
		t.Fatalf("a second Key on the same storage disagrees: %s %s", again, kid)
	}
}

func TestMigrateSigningJWK(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	l := LayoutOf(RoleResource, "https://api.example")
	old, _ := keys.Generate(keys.AlgEd25519, "legacy-kid")
	b, _ := old.MarshalPrivateJWK()
	if err := st.Store(context.Background(), l.SigningKey(), b); err != nil {
		t.Fatal(err)
	}
	k := keyAt(st, l, newClock(), Policy{})
	k.now = time.Now
	if got := signerKID(t, k); got != "legacy-kid" {
		t.Fatalf("upgrade changed the kid: %s", got)
	}
	if !st.Exists(context.Background(), l.KeyringKey()) {
		t.Fatal("migration did not store the keyring")
	}
	// A corrupt old key is an error, never silently replaced.
	bad := LayoutOf(RoleResource, "https://bad.example")
	_ = st.Store(context.Background(), bad.SigningKey(), []byte("not json"))
	if _, err := NewKey(st, bad, "").Signer(context.Background()); err == nil || st.Exists(context.Background(), bad.KeyringKey()) {
		t.Fatalf("a corrupt signing.jwk was replaced: %v", err)
	}
}

func TestCorruptKeyring(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	for name, body := range map[string]string{
		"not json": "not json",
		"no keys":  `{"keys":[]}`,
		"bad jwk":  `{"keys":[{"kid":"a","jwk":{"kty":"OKP"},"activates":"2026-01-01T00:00:00Z"}]}`,
	} {
		l := LayoutOf(RoleIssuer, "https://"+strings.ReplaceAll(name, " ", "-")+".example")
		_ = st.Store(context.Background(), l.KeyringKey(), []byte(body))
		_, err := NewKey(st, l, "").Signer(context.Background())
		if err == nil || !strings.Contains(err.Error(), "keyring.json is unreadable") {
			t.Errorf("%s: want a clear error, got %v", name, err)
		}
		if _, err := NewKey(st, l, "").Rotate(context.Background()); err == nil {
			t.Errorf("%s: rotated over a corrupt keyring", name)
		}
	}
}
