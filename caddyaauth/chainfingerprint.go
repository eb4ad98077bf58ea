package caddyaauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// configFingerprint names a handler by its configuration (its JSON, as provisioned from
// the same Caddyfile or JSON on every instance), so that another instance running the
// same config finds the same route for a chained request (see storedChain). Two handlers
// of one server with identical configurations share a fingerprint; either serves the
// poll, and the replay runs through the server's routes anyway.
func configFingerprint(h *Handler) string {
	b, err := json.Marshal(h)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}
