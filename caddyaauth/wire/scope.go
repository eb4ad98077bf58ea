package wire

// ValidScope reports whether s is one scope-token of RFC 6749 §3.3:
// 1*( %x21 / %x23-5B / %x5D-7E ), that is printable ASCII other than space, '"' and '\'.
func ValidScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			return false
		}
	}
	return true
}
