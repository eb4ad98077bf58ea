package discovery

import (
	"errors"
	"fmt"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// keySet is a JWKS converted to Go keys once per fetch, indexed for the hot path.
type keySet struct {
	byKID        map[string]*keys.PublicKey
	byThumbprint map[string]*keys.PublicKey
}

// parseJWKS converts {"keys":[...]}. Keys that keys.FromAny refuses (RSA, oct, private
// parts, wrong use/key_ops, other curves) are skipped so one odd key does not take the
// issuer's other keys down. A kid shared by two different usable keys is ambiguous,
// so that kid matches nothing (the keys stay reachable by thumbprint, which is
// unambiguous). More than MaxJWKSKeys entries make the whole set invalid.
func parseJWKS(obj map[string]any) (*keySet, error) {
	raw, ok := obj["keys"].([]any)
	if !ok {
		return nil, errors.New(`JWKS has no "keys" array`)
	}
	if len(raw) > MaxJWKSKeys {
		return nil, fmt.Errorf("JWKS lists %d keys, more than %d", len(raw), MaxJWKSKeys)
	}
	ks := &keySet{
		byKID:        make(map[string]*keys.PublicKey, len(raw)),
		byThumbprint: make(map[string]*keys.PublicKey, len(raw)),
	}
	dupKID := map[string]bool{}
	for _, r := range raw {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		pk, err := keys.FromAny(m)
		if err != nil {
			continue
		}
		if _, seen := ks.byThumbprint[pk.Thumbprint]; !seen {
			ks.byThumbprint[pk.Thumbprint] = pk
		}
		if pk.KID == "" {
			continue
		}
		if prev, seen := ks.byKID[pk.KID]; seen && prev.Thumbprint == pk.Thumbprint {
			continue // the same key listed twice is not ambiguous
		} else if seen || dupKID[pk.KID] {
			dupKID[pk.KID] = true
			delete(ks.byKID, pk.KID)
			continue
		}
		ks.byKID[pk.KID] = pk
	}
	return ks, nil
}
