// Package keystore keeps the signing keys of a resource or an auth server in Caddy
// storage as a keyring: created once under a storage lock and rotated under it, so every
// reload, restart and cluster member sharing the storage signs with the same key and
// publishes the same keys. A new key is published before it signs, and a retired key
// stays published until every token it signed has expired.
package keystore

import (
	"encoding/json"
	"path"
	"strings"

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
//	keyring.json       the signing keys (gateway resource key, auth server key, ...), see Key
//	signing.jwk        the single signing key of older versions, migrated into keyring.json
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

// SigningKey is the storage key of the single private signing JWK of older versions,
// migrated into the keyring as its active key.
func (l Layout) SigningKey() string { return l.Key("signing.jwk") }

// KeyringKey is the storage key of the keyring: the signing keys with their creation,
// activation and retire times (Key).
func (l Layout) KeyringKey() string { return l.Key("keyring.json") }

// InteractKey is the storage key of the auth server's CSRF key.
func (l Layout) InteractKey() string { return l.Key("interact.key") }

// keygenLock is the lock taken while the keyring is created or rotated (the name older
// versions lock while generating signing.jwk).
func (l Layout) keygenLock() string { return l.Key("keygen") }

// InteractKeyLock is the lock taken while the CSRF key is generated.
func (l Layout) InteractKeyLock() string {
	return "aauth_interact_key_" + certmagic.StorageKeys.Safe(l.id)
}

// GrantsLock serialises updates of the remembered grants across instances.
func (l Layout) GrantsLock() string {
	return "aauth_grants_" + strings.ReplaceAll(l.prefix, "/", "_")
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
