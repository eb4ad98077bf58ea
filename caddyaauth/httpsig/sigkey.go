package httpsig

import (
	"fmt"
	"strings"

	"github.com/dunglas/httpsfv"
)

// Schemes of the Signature-Key header this project supports.
const (
	SchemeHWK     = "hwk"
	SchemeJWKSURI = "jwks_uri"
	SchemeJWT     = "jwt"
)

// Param is one Signature-Key parameter; order is kept so a signer emits a stable header.
type Param struct{ Name, Value string }

// SigKey is one parsed Signature-Key member, whichever syntax it arrived in.
type SigKey struct {
	Label  string
	Scheme string
	Params []Param
	Legacy bool // the parenthesised form sig=(scheme=… …) of the draft's 2026-03 wire
}

// Get returns a parameter value ("" when absent).
func (k SigKey) Get(name string) string {
	for _, p := range k.Params {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// Has reports whether the parameter is present.
func (k SigKey) Has(name string) bool {
	for _, p := range k.Params {
		if p.Name == name {
			return true
		}
	}
	return false
}

// Map returns the parameters as a map (for JWK construction).
func (k SigKey) Map() map[string]string {
	m := make(map[string]string, len(k.Params))
	for _, p := range k.Params {
		m[p.Name] = p.Value
	}
	return m
}

// Format serialises the member: the parenthesised form by default, the RFC 8941
// dictionary form when dictionary is true.
func (k SigKey) Format(dictionary bool) string {
	var b strings.Builder
	b.WriteString(k.Label)
	if dictionary {
		b.WriteString("=")
		b.WriteString(k.Scheme)
		for _, p := range k.Params {
			b.WriteString(";")
			b.WriteString(p.Name)
			b.WriteString("=")
			b.WriteString(quote(p.Value))
		}
		return b.String()
	}
	b.WriteString("=(scheme=")
	b.WriteString(k.Scheme)
	for _, p := range k.Params {
		b.WriteString(" ")
		b.WriteString(p.Name)
		b.WriteString("=")
		b.WriteString(quote(p.Value))
	}
	b.WriteString(")")
	return b.String()
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// ParseSignatureKey parses a Signature-Key field value in either syntax
// and returns its members in order. The form is chosen by the character after the first
// "label=": "(" means the parenthesised form, anything else the RFC 8941 dictionary.
func ParseSignatureKey(raw string) ([]SigKey, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return nil, fail(CodeInvalidRequest, "empty Signature-Key")
	}
	eq := strings.IndexByte(s, '=')
	if eq > 0 && eq+1 < len(s) && s[eq+1] == '(' {
		return parseLegacySigKey(s)
	}
	return parseDictSigKey(s)
}

func parseDictSigKey(s string) ([]SigKey, error) {
	d, err := httpsfv.UnmarshalDictionary([]string{s})
	if err != nil {
		return nil, fail(CodeInvalidSignature, "Signature-Key is not a valid structured dictionary")
	}
	var out []SigKey
	for _, label := range d.Names() {
		m, _ := d.Get(label)
		item, ok := m.(httpsfv.Item)
		if !ok {
			return nil, fail(CodeInvalidSignature, "Signature-Key member %q must be a token with parameters", label)
		}
		tok, ok := item.Value.(httpsfv.Token)
		if !ok {
			return nil, fail(CodeInvalidSignature, "Signature-Key scheme of %q must be a token", label)
		}
		k := SigKey{Label: label, Scheme: string(tok)}
		for _, name := range item.Params.Names() {
			v, _ := item.Params.Get(name)
			str, ok := v.(string)
			if !ok {
				return nil, fail(CodeInvalidSignature, "Signature-Key parameter %q must be a string", name)
			}
			if name == "scheme" {
				return nil, fail(CodeInvalidSignature, "Signature-Key parameter \"scheme\" is not allowed in the dictionary form")
			}
			k.Params = append(k.Params, Param{name, str})
		}
		out = append(out, k)
	}
	return out, nil
}

// parseLegacySigKey parses label=(scheme=tok name="v" …)[, label=(…)] strictly: the
// parenthesised form (draft-hardt-aauth's reference implementation, 2026-03) is not RFC
// 8941, so it gets a small hand parser.
func parseLegacySigKey(s string) ([]SigKey, error) {
	var out []SigKey
	p := &scan{s: s}
	for {
		p.ows()
		label := p.key()
		if label == "" || !p.eat('=') || !p.eat('(') {
			return nil, fail(CodeInvalidSignature, "malformed Signature-Key member")
		}
		k := SigKey{Label: label, Legacy: true}
		seen := map[string]bool{}
		for {
			p.sp()
			if p.eat(')') {
				break
			}
			name := p.key()
			if name == "" || !p.eat('=') {
				return nil, fail(CodeInvalidSignature, "malformed Signature-Key parameter")
			}
			if seen[name] {
				return nil, fail(CodeInvalidSignature, "duplicate Signature-Key parameter %q", name)
			}
			seen[name] = true
			var val string
			var quoted bool
			if p.peek() == '"' {
				v, ok := p.str()
				if !ok {
					return nil, fail(CodeInvalidSignature, "malformed quoted value for %q", name)
				}
				val, quoted = v, true
			} else {
				val = p.token()
				if val == "" {
					return nil, fail(CodeInvalidSignature, "empty value for %q", name)
				}
			}
			if name == "scheme" {
				if quoted {
					return nil, fail(CodeInvalidSignature, "scheme must be a bare token")
				}
				k.Scheme = val
				continue
			}
			if !quoted {
				return nil, fail(CodeInvalidSignature, "value of %q must be a quoted string", name)
			}
			k.Params = append(k.Params, Param{name, val})
			if c := p.peek(); c != ' ' && c != ')' {
				return nil, fail(CodeInvalidSignature, "parameters must be separated by spaces")
			}
		}
		if k.Scheme == "" {
			return nil, fail(CodeInvalidSignature, "Signature-Key member %q has no scheme", label)
		}
		out = append(out, k)
		p.ows()
		if p.eof() {
			return out, nil
		}
		if !p.eat(',') {
			return nil, fail(CodeInvalidSignature, "unexpected characters after Signature-Key member")
		}
	}
}

// scan is a tiny byte scanner for the legacy Signature-Key syntax.
type scan struct {
	s string
	i int
}

func (p *scan) eof() bool { return p.i >= len(p.s) }
func (p *scan) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.i]
}

func (p *scan) eat(c byte) bool {
	if p.peek() == c && !p.eof() {
		p.i++
		return true
	}
	return false
}

func (p *scan) sp() {
	for !p.eof() && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *scan) ows() {
	for !p.eof() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// key reads an RFC 8941 key: lcalpha / "*" then lcalpha / DIGIT / "_" / "-" / "." / "*".
func (p *scan) key() string {
	start := p.i
	for !p.eof() {
		c := p.s[p.i]
		first := p.i == start
		if c >= 'a' && c <= 'z' || c == '*' || !first && (c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			p.i++
			continue
		}
		break
	}
	return p.s[start:p.i]
}

// token reads a bare value: visible ASCII except delimiters.
func (p *scan) token() string {
	start := p.i
	for !p.eof() {
		c := p.s[p.i]
		if c <= ' ' || c >= 0x7f || c == ')' || c == '(' || c == '"' || c == ',' || c == ';' || c == '=' {
			break
		}
		p.i++
	}
	return p.s[start:p.i]
}

// str reads an RFC 8941 sf-string ("…" with \" and \\ escapes, printable ASCII only).
func (p *scan) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	// Fast path: no escapes before the closing quote, so the value is a plain slice.
	j := strings.IndexAny(p.s[p.i:], "\"\\")
	if j < 0 {
		return "", false // unterminated
	}
	if p.s[p.i+j] == '"' {
		v := p.s[p.i : p.i+j]
		for k := 0; k < len(v); k++ {
			if v[k] < 0x20 || v[k] >= 0x7f {
				return "", false
			}
		}
		p.i += j + 1
		return v, true
	}
	var b strings.Builder
	for !p.eof() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.eof() {
				return "", false
			}
			n := p.s[p.i]
			if n != '"' && n != '\\' {
				return "", false
			}
			b.WriteByte(n)
			p.i++
		case c == '"':
			return b.String(), true
		case c < 0x20 || c >= 0x7f:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}

// KeyFor returns the member of a Signature-Key header with the given label.
func KeyFor(members []SigKey, label string) (SigKey, error) {
	var found *SigKey
	for i := range members {
		if members[i].Label == label {
			found = &members[i] // the last one wins, as for a structured dictionary
		} else {
			return SigKey{}, fail(CodeInvalidSignature, "Signature-Key has a member %q for a signature that is not present", members[i].Label)
		}
	}
	if found == nil {
		return SigKey{}, fail(CodeInvalidSignature, "Signature-Key has no member %q", label)
	}
	return *found, nil
}

func (k SigKey) String() string { return fmt.Sprintf("%s scheme=%s", k.Label, k.Scheme) }
