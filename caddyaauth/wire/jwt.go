package wire

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// maxPeekHeader bounds the protected header TokenType decodes.
const maxPeekHeader = 1024

// TokenType returns the typ of a compact JWT's protected header without verifying
// anything, or "" when it cannot be read. typ is a media type (RFC 7515 §4.1.9): it is
// compared case-insensitively and its "application/" prefix may be omitted, so the value
// is lowercased and the prefix removed. Use it to pick a verification path or to name a
// token's kind in logs without printing the token; the strict parse is the token
// package's.
func TokenType(raw string) string {
	dot := strings.IndexByte(raw, '.')
	if dot <= 0 || dot > maxPeekHeader {
		return ""
	}
	hdr, err := base64.RawURLEncoding.DecodeString(raw[:dot])
	if err != nil {
		return ""
	}
	var h struct {
		Typ string `json:"typ"`
	}
	if json.Unmarshal(hdr, &h) != nil {
		return ""
	}
	return NormalizeTokenType(h.Typ)
}

// NormalizeTokenType is a JOSE typ as TokenType returns it: lowercased, without an
// "application/" prefix (RFC 7515 §4.1.9).
func NormalizeTokenType(typ string) string {
	return strings.TrimPrefix(strings.ToLower(typ), "application/")
}
