// Package ids makes the random identifiers AAuth servers hand out: interaction codes a
// person types (8 characters of Crockford's base32) and unguessable ids for pending URLs
// and handles (base64url of crypto/rand bytes). The auth server and the gateway's
// interaction chaining share it.
package ids

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
)

// CodeAlphabet is Crockford's base32 alphabet: digits and upper-case letters without I,
// L, O and U, so a code read aloud or typed from a screen is unambiguous. The draft
// (draft-hardt-aauth §19.11) asks only for URL-safe characters; this alphabet is our choice.
const CodeAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// CodeLen is the length of an interaction code: 8 characters of 5 bits, 40 bits.
const CodeLen = 8

// NewCode returns a fresh interaction code from crypto/rand.
func NewCode() string {
	var b [5]byte // 40 bits, exactly 8 symbols
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	v := uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4])
	out := make([]byte, CodeLen)
	for i := CodeLen - 1; i >= 0; i-- {
		out[i] = CodeAlphabet[v&31]
		v >>= 5
	}
	return string(out)
}

// NormalizeCode turns what a user typed into the canonical code: case is ignored,
// hyphens and white space are dropped, and Crockford's look-alikes are mapped (I and L to
// 1, O to 0). It reports false unless the result is exactly CodeLen alphabet characters.
// The result is safe to use in a storage key.
func NormalizeCode(s string) (string, bool) {
	if len(s) > 64 {
		return "", false
	}
	var b strings.Builder
	b.Grow(CodeLen)
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
		if r > 127 || strings.IndexByte(CodeAlphabet, byte(r)) < 0 {
			return "", false
		}
		if b.Len() == CodeLen {
			return "", false
		}
		b.WriteByte(byte(r))
	}
	if b.Len() != CodeLen {
		return "", false
	}
	return b.String(), true
}

// NewRandomID returns n random bytes from crypto/rand, base64url without padding, never
// beginning with "-": ids are typed on command lines (`caddy aauth grants revoke <id>`),
// where a leading "-" reads as a flag. The first character is drawn again when its six
// bits encode "-" (62), which costs log2(64/63) of a bit.
func NewRandomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	for n > 0 && b[0]>>2 == 62 {
		if _, err := rand.Read(b[:1]); err != nil {
			panic("crypto/rand: " + err.Error())
		}
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidRandomID reports whether s has the shape of NewRandomID(n): the exact length and
// only base64url characters. Ids from URLs and headers are checked with it before they
// are used as keys.
func ValidRandomID(s string, n int) bool {
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
