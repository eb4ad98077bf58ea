// Package keystore keeps the signing keys of a resource or an auth server in Caddy
// storage: loaded, or generated once under a storage lock, so every
// reload, restart and cluster member sharing the storage signs with the same key and
// publishes the same kid.
package keystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// Roles of the identifiers that own storage.
const (
	RoleResource = "resource" // a gateway's resource identifier
	RoleIssuer   = "issuer"   // an auth server's issuer
	RoleAgent    = "agent"    // a resource's own agent key (agent_identity own_key)
	RoleGateway  = "gateway"  // the gateway's upstream assertion key (upstream_assertion)
)

// Record folders under an issuer's Layout.
const (
	DirJTI      = "jti"      // resource-token jtis accepted: <hex sha256(iss "\n" jti)>
	DirPending  = "pending"  // pending (deferred) token requests: <id>.json
	DirCodes    = "codes"    // interaction codes: <CODE>
	DirSessions = "sessions" // consent page login sessions: <hex sha256(sid)>.json
	DirGrants   = "grants"   // remembered grants: <hex sha256(agent "\n" resource)>.json, index.json
)

// Layout is the storage key layout of one identifier, the one place that names the keys
// this module keeps in Caddy storage. Everything lives under
// aauth/<role>/<certmagic.StorageKeys.Safe(id)>/:
//
//	signing.jwk        the private signing JWK (gateway resource key, auth server key)
//	interact.key       the auth server's CSRF key for the consent pages
//	jti/, pending/, codes/, sessions/, grants/   the auth server's records (Dir*)
type Layout struct {
	role, id, prefix string
}

// LayoutOf returns the layout of identifier id in role (RoleResource or RoleIssuer).
func LayoutOf(role, id string) Layout {
	return Layout{role: role, id: id, prefix: path.Join("aauth", role, certmagic.StorageKeys.Safe(id))}
}

// Prefix is the folder of every key of the identifier.
func (l Layout) Prefix() string { return l.prefix }

// Key joins parts under the identifier's folder.
func (l Layout) Key(parts ...string) string {
	return path.Join(append([]string{l.prefix}, parts...)...)
}

// Dir is a record folder (DirJTI, DirPending, ...).
func (l Layout) Dir(dir string) string { return l.Key(dir) }

// SigningKey is the storage key of the private signing JWK.
func (l Layout) SigningKey() string { return l.Key("signing.jwk") }

// InteractKey is the storage key of the auth server's CSRF key.
func (l Layout) InteractKey() string { return l.Key("interact.key") }

// keygenLock is the lock taken while the signing key is generated.
func (l Layout) keygenLock() string { return l.Key("keygen") }

// InteractKeyLock is the lock taken while the CSRF key is generated.
func (l Layout) InteractKeyLock() string {
	return "aauth_interact_key_" + certmagic.StorageKeys.Safe(l.id)
}

// GrantsLock serialises updates of the remembered grants across instances.
func (l Layout) GrantsLock() string {
	return "aauth_grants_" + strings.ReplaceAll(l.prefix, "/", "_")
}

// LoadOrGenerate returns the signing key stored for (role, id), generating one with alg
// when there is none. Generation happens under a storage lock with a re-check after the
// lock is taken, so concurrent first starts agree on one key.
func LoadOrGenerate(ctx context.Context, st certmagic.Storage, l Layout, alg string) (*keys.Signer, error) {
	k := l.SigningKey()
	if s, err := load(ctx, st, k); err == nil {
		return s, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	lock := l.keygenLock()
	if err := st.Lock(ctx, lock); err != nil {
		return nil, fmt.Errorf("locking %s: %w", lock, err)
	}
	defer func() { _ = st.Unlock(context.WithoutCancel(ctx), lock) }()
	if s, err := load(ctx, st, k); err == nil {
		return s, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	s, err := keys.Generate(alg, "")
	if err != nil {
		return nil, err
	}
	// The kid is derived from the key itself: stable, unique, and meaningless.
	s.Public.KID = s.Public.Thumbprint[:16]
	b, err := s.MarshalPrivateJWK()
	if err != nil {
		return nil, err
	}
	if err := st.Store(ctx, k, b); err != nil {
		return nil, fmt.Errorf("storing signing key: %w", err)
	}
	return s, nil
}

func load(ctx context.Context, st certmagic.Storage, k string) (*keys.Signer, error) {
	b, err := st.Load(ctx, k)
	if err != nil {
		return nil, err
	}
	s, err := keys.ParsePrivateJWK(b)
	if err != nil {
		return nil, fmt.Errorf("stored signing key %s is unreadable: %w", k, err)
	}
	if s.Public.KID == "" {
		s.Public.KID = s.Public.Thumbprint[:16]
	}
	return s, nil
}

// JWKS renders the public keys as a JWKS document.
func JWKS(pubs ...*keys.PublicKey) []byte {
	type set struct {
		Keys []map[string]any `json:"keys"`
	}
	out := set{Keys: []map[string]any{}}
	for _, p := range pubs {
		m := p.Members()
		m["use"] = "sig"
		m["alg"] = p.JWSAlg()
		out.Keys = append(out.Keys, m)
	}
	b, _ := json.Marshal(out)
	return b
}

// Key is a signing key that is loaded from storage, or generated and stored, on first
// use rather than when the config is provisioned, so that `caddy validate` writes
// nothing. A failed attempt is retried on the next use.
type Key struct {
	st     certmagic.Storage
	layout Layout
	alg    string

	mu     sync.Mutex
	signer *keys.Signer
}

// NewKey returns the key of layout l in st, generated with alg when there is none.
func NewKey(st certmagic.Storage, l Layout, alg string) *Key {
	return &Key{st: st, layout: l, alg: alg}
}

// Signer returns the key, loading or generating it the first time.
func (k *Key) Signer(ctx context.Context) (*keys.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.signer != nil {
		return k.signer, nil
	}
	s, err := LoadOrGenerate(ctx, k.st, k.layout, k.alg)
	if err != nil {
		return nil, err
	}
	k.signer = s
	return s, nil
}
