package token

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// Fixed test identities.
const (
	asID       = "https://auth.example"
	resourceID = "https://resource.example"
	agentID    = "https://agent.example"
	asKID      = "auth-key-1"

	// nowUnix is inside the Appendix A auth token's window (iat 1774920900, exp 1774924500).
	nowUnix = int64(1774920963)
)

var testNow = time.Unix(nowUnix, 0)

func seedSigner(t testing.TB, seedHex, kid string) *keys.Signer {
	t.Helper()
	seed, err := hex.DecodeString(seedHex)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keys.NewSigner(ed25519.NewKeyFromSeed(seed), kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// asSigner is the RFC 8032 test-2 key (PROTOCOL.md Appendix A AS key, kid auth-key-1).
func asSigner(t testing.TB) *keys.Signer {
	return seedSigner(t, "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", asKID)
}

// agentSigner is the RFC 8032 test-1 key (Appendix A agent key, kid key-1).
func agentSigner(t testing.TB) *keys.Signer {
	return seedSigner(t, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "key-1")
}

func genSigner(t testing.TB, alg, kid string) *keys.Signer {
	t.Helper()
	s, err := keys.Generate(alg, kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// kv / obj build JSON objects member by member, so tests can write duplicates, odd
// types and exact spellings that encoding/json would never produce.
type kv struct{ k, v string }

type obj []kv

func (o obj) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(m.k))
		b.WriteByte(':')
		b.WriteString(m.v)
	}
	b.WriteByte('}')
	return b.String()
}

// set replaces the first member named k (or appends it).
func (o obj) set(k, v string) obj {
	out := append(obj(nil), o...)
	for i := range out {
		if out[i].k == k {
			out[i].v = v
			return out
		}
	}
	return append(out, kv{k, v})
}

// del removes every member named k.
func (o obj) del(k string) obj {
	var out obj
	for _, m := range o {
		if m.k != k {
			out = append(out, m)
		}
	}
	return out
}

// add appends a member even if one with that name exists.
func (o obj) add(k, v string) obj { return append(append(obj(nil), o...), kv{k, v}) }

func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func num(n int64) string { return strconv.FormatInt(n, 10) }

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// craft signs header.payload with s exactly as given (no checks), like a hostile or buggy
// issuer would, so each malformed token differs from a good one only in what is tested.
func craft(t testing.TB, s *keys.Signer, hdr, payload string) string {
	t.Helper()
	in := enc([]byte(hdr)) + "." + enc([]byte(payload))
	sig, err := s.Sign([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + enc(sig)
}

func jwkJSON(t testing.TB, k *keys.PublicKey) string {
	t.Helper()
	b, err := json.Marshal(k.Members())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// resolver returns the given key for (iss, kid) and counts calls.
type resolver struct {
	calls atomic.Int64
	iss   string
	key   *keys.PublicKey
}

func (r *resolver) resolve(_ context.Context, iss, kid string) (*keys.PublicKey, error) {
	r.calls.Add(1)
	if iss != r.iss || kid != r.key.KID {
		return nil, errors.New("no such key")
	}
	return r.key, nil
}

func codeOf(err error) string {
	if err == nil {
		return ""
	}
	if c := CodeOf(err); c != "" {
		return c
	}
	return "non-token error: " + err.Error()
}
