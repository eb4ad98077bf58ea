package keystore

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

func TestLoadOrGenerateIsStableAndRaceFree(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	ctx := context.Background()
	var wg sync.WaitGroup
	kids := make([]string, 5)
	for i := range kids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := LoadOrGenerate(ctx, st, LayoutOf(RoleResource, "https://api.example"), keys.AlgEd25519)
			if err != nil {
				t.Error(err)
				return
			}
			kids[i] = s.Public.KID
		}()
	}
	wg.Wait()
	for _, k := range kids {
		if k == "" || k != kids[0] {
			t.Fatalf("concurrent first starts disagree: %v", kids)
		}
	}
	again, err := LoadOrGenerate(ctx, st, LayoutOf(RoleResource, "https://api.example"), keys.AlgEd25519)
	if err != nil || again.Public.KID != kids[0] {
		t.Fatalf("reload changed the key: %v %v", err, again)
	}
	other, _ := LoadOrGenerate(ctx, st, LayoutOf(RoleIssuer, "https://api.example"), keys.AlgECDSAP256)
	if other.Public.KID == kids[0] || other.Public.Alg() != keys.AlgECDSAP256 {
		t.Fatal("roles must not share keys")
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(JWKS(again.Public), &set); err != nil || len(set.Keys) != 1 || set.Keys[0]["kid"] != kids[0] || set.Keys[0]["d"] != nil {
		t.Fatalf("JWKS %v %v", set, err)
	}
}

func TestCorruptStoredKey(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	_ = st.Store(context.Background(), LayoutOf(RoleResource, "x").SigningKey(), []byte("not json"))
	if _, err := LoadOrGenerate(context.Background(), st, LayoutOf(RoleResource, "x"), ""); err == nil {
		t.Fatal("a corrupt stored key must not be silently replaced")
	}
}

func TestKeyIsLazy(t *testing.T) {
	dir := t.TempDir()
	st := &certmagic.FileStorage{Path: dir}
	l := LayoutOf(RoleIssuer, "https://as.example")
	k := NewKey(st, l, keys.AlgEd25519)
	if st.Exists(context.Background(), l.SigningKey()) {
		t.Fatal("NewKey wrote to storage")
	}
	s1, err := k.Signer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Exists(context.Background(), l.SigningKey()) {
		t.Fatal("first use did not store the key")
	}
	s2, err := NewKey(st, l, keys.AlgEd25519).Signer(context.Background())
	if err != nil || s2.Public.KID != s1.Public.KID {
		t.Fatalf("a second Key on the same storage disagrees: %v", err)
	}
}
