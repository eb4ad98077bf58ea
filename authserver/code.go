package authserver

import "github.com/caddy-aauth/caddy-aauth/caddyaauth/ids"

// Interaction codes and random ids come from package ids, which the gateway's
// interaction chaining shares; these names keep the auth server's call sites short.

// codeAlphabet is Crockford's base32 alphabet (ids.CodeAlphabet).
const codeAlphabet = ids.CodeAlphabet

// codeLen is the length of an interaction code (ids.CodeLen).
const codeLen = ids.CodeLen

// pendingIDBytes is the entropy of a pending id: 128 random bits, so pending URLs are
// unguessable (draft-hardt-aauth §20.5).
const pendingIDBytes = 16

// newCode returns a fresh interaction code (ids.NewCode).
func newCode() string { return ids.NewCode() }

// normalizeCode canonicalises a typed code (ids.NormalizeCode).
func normalizeCode(s string) (string, bool) { return ids.NormalizeCode(s) }

// newRandomID returns n random bytes, base64url without padding (ids.NewRandomID).
func newRandomID(n int) string { return ids.NewRandomID(n) }

// newPendingID returns a pending request id with 128 random bits.
func newPendingID() string { return newRandomID(pendingIDBytes) }

// validRandomID reports whether s has the shape of newRandomID(n) (ids.ValidRandomID).
func validRandomID(s string, n int) bool { return ids.ValidRandomID(s, n) }
