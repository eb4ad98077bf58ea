package authserver

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
)

// codeAlphabet is Crockford's base32 alphabet: digits and upper-case letters without I,
// L, O and U, so a code read aloud or typed from a screen is unambiguous. The draft
// (draft-hardt-aauth §19.11) asks only for URL-safe characters; this alphabet is our choice.
const codeAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// codeLen is the length of an interaction code: 8 characters of 5 bits, 40 bits.
const codeLen = 8

// pendingIDBytes is the entropy of a pending id: 128 random bits, so pending URLs are
// unguessable (draft-hardt-aauth §20.5).
const pendingIDBytes = 16

// newCode returns a fresh interaction code from crypto/rand.
func newCode() string {
	var b [5]byte // 40 bits, exactly 8 symbols
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	v := uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4])
	out := make([]byte, codeLen)
	for i := codeLen - 1; i >= 0; i-- {
		out[i] = codeAlphabet[v&31]
		v >>= 5
	}
	return string(out)
}

// normalizeCode turns what a user typed into the canonical code: case is ignored,
// hyphens and white space are dropped, and Crockford's look-alikes are mapped (I and L to
// 1, O to 0). It reports false unless the result is exactly codeLen alphabet characters.
// The result is safe to use in a storage key.
func normalizeCode(s string) (string, bool) {
	if len(s) > 64 {
		return "", false
	}
	var b strings.Builder
	b.Grow(codeLen)
	for _, r := range s {
		switch {
		case r == '-' || r == ' ' || r == '\t' || r == '\u00a0':
			continue
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		}
		switch r {
		case 'I', 'L':
			r = '1'
		case 'O':
			r = '0'
		}
		if r > 127 || strings.IndexByte(codeAlphabet, byte(r)) < 0 {
			return "", false
		}
		if b.Len() == codeLen {
			return "", false
		}
		b.WriteByte(byte(r))
	}
	if b.Len() != codeLen {
		return "", false
	}
	return b.String(), true
}

// newRandomID returns n random bytes from crypto/rand, base64url without padding.
func newRandomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// newPendingID returns a pending request id with 128 random bits.
func newPendingID() string { return newRandomID(pendingIDBytes) }

// validRandomID reports whether s has the shape of newRandomID(n): the exact length and
// only base64url characters. Ids from URLs are checked with it before they are used in a
// storage key.
func validRandomID(s string, n int) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(n) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
