package httpsig

import (
	"strings"

	"github.com/dunglas/httpsfv"
)

// inputList is a Signature-Input value reduced to what a signature needs: its one
// member's label, covered component names, signature parameters and the canonical
// serialisation of the inner list (@signature-params, RFC 9421 §2.3).
type inputList struct {
	label      string
	items      []string
	params     []inputParam
	serialized string             // set by the canonical reader
	general    *httpsfv.InnerList // set by the general parser

	// Room for the usual lists, so that reading one takes a single allocation.
	itemsBuf  [8]string
	paramsBuf [4]inputParam
}

// Kinds of a signature parameter value: the two RFC 8941 bare item types a signature
// parameter may have, and every other one.
const (
	kindOther = iota
	kindInteger
	kindString
)

type inputParam struct {
	name string
	kind int
	num  int64
	str  string
}

// parse reads a Signature-Input value into il: the canonical form through
// parseCanonical, anything else through the general RFC 8941 parser. Both give the
// same result for a canonical value (TestCanonicalInputMatchesRFC8941, FuzzCanonicalInput).
func (il *inputList) parse(in string) error {
	if il.parseCanonical(in) {
		return nil
	}
	*il = inputList{}
	return il.parseGeneral(in)
}

// parseGeneral reads any RFC 8941 dictionary and keeps it only when it has one
// member, an inner list of plain strings; the serialisation is recomputed.
func (out *inputList) parseGeneral(in string) error {
	d, err := httpsfv.UnmarshalDictionary([]string{in})
	if err != nil {
		return fail(CodeInvalidSignature, "Signature-Input is not a valid structured dictionary")
	}
	names := d.Names()
	if len(names) != 1 {
		return fail(CodeInvalidSignature, "exactly one signature is accepted, found %d", len(names))
	}
	m, _ := d.Get(names[0])
	il, ok := m.(httpsfv.InnerList)
	if !ok {
		return fail(CodeInvalidSignature, "Signature-Input member must be an inner list")
	}
	out.label = names[0]
	for _, it := range il.Items {
		name, ok := it.Value.(string)
		if !ok {
			return fail(CodeInvalidSignature, "covered components must be strings")
		}
		if len(it.Params.Names()) > 0 {
			return fail(CodeInvalidSignature, "component parameters are not supported (%q)", name)
		}
		out.items = append(out.items, name)
	}
	for _, p := range il.Params.Names() {
		v, _ := il.Params.Get(p)
		ip := inputParam{name: p}
		switch x := v.(type) {
		case int64:
			ip.kind, ip.num = kindInteger, x
		case string:
			ip.kind, ip.str = kindString, x
		}
		out.params = append(out.params, ip)
	}
	out.general = &il // serialised once the checks passed (serialization)
	return nil
}

// serialization is the canonical serialisation of the inner list: as received for a
// canonical value, else re-serialised.
func (il *inputList) serialization() (string, error) {
	if il.general == nil {
		return il.serialized, nil
	}
	s, err := httpsfv.Marshal(httpsfv.List{*il.general})
	if err != nil {
		return "", fail(CodeInvalidSignature, "Signature-Input cannot be serialised")
	}
	return s, nil
}

// parseCanonical reads a Signature-Input value that is exactly the RFC 8941 §4.1
// serialisation of a one-member dictionary whose value is an inner list of strings with
// integer and string parameters: label=("c1" "c2");created=1;keyid="k". Signers send
// this form, and its inner list is then its own canonical serialisation, so no
// structured-field objects need to be built. It reports false for anything else (other
// spacing, escapes, other value types, repeated parameters, several members), which
// the general parser decides.
func (il *inputList) parseCanonical(in string) bool {
	p := &scan{s: in}
	label := p.key()
	if label == "" || !p.eat('=') || !p.eat('(') {
		return false
	}
	start := p.i - 1
	il.label = label
	il.items = il.itemsBuf[:0]
	for !p.eat(')') {
		if len(il.items) > 0 && !p.eat(' ') {
			return false
		}
		s, ok := p.plainString()
		if !ok {
			return false
		}
		il.items = append(il.items, s)
	}
	il.params = il.paramsBuf[:0]
	for p.eat(';') {
		name := p.key()
		if name == "" || !p.eat('=') {
			return false
		}
		for _, q := range il.params {
			if q.name == name {
				return false
			}
		}
		ip := inputParam{name: name}
		if p.peek() == '"' {
			s, ok := p.plainString()
			if !ok {
				return false
			}
			ip.kind, ip.str = kindString, s
		} else if c := p.peek(); c >= '0' && c <= '9' {
			n, ok := p.canonicalInteger()
			if !ok {
				return false
			}
			ip.kind, ip.num = kindInteger, n
		} else if !p.sfToken() {
			return false
		} // else a Token: no signature parameter may be one (kindOther), it is refused
		il.params = append(il.params, ip)
	}
	if !p.eof() {
		return false
	}
	il.serialized = in[start:]
	return true
}

// plainString reads an RFC 8941 string without escapes: DQUOTE, printable ASCII other
// than DQUOTE and "\", DQUOTE.
func (p *scan) plainString() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	j := strings.IndexByte(p.s[p.i:], '"')
	if j < 0 {
		return "", false
	}
	v := p.s[p.i : p.i+j]
	for k := 0; k < len(v); k++ {
		if v[k] < 0x20 || v[k] > 0x7e || v[k] == '\\' {
			return "", false
		}
	}
	p.i += j + 1
	return v, true
}

// sfToken reads an RFC 8941 Token (§3.3.4): ALPHA or "*", then tchar, ":" or "/".
func (p *scan) sfToken() bool {
	start := p.i
	for !p.eof() {
		c := p.s[p.i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if p.i == start && !alpha && c != '*' {
			return false
		}
		if !alpha && !(c >= '0' && c <= '9') && !strings.ContainsRune("!#$%&'*+-.^_`|~:/", rune(c)) {
			break
		}
		p.i++
	}
	return p.i > start
}

// canonicalInteger reads a non-negative RFC 8941 integer as it serialises: 1 to 15
// digits, no leading zero.
func (p *scan) canonicalInteger() (int64, bool) {
	start := p.i
	var n int64
	for !p.eof() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		n = n*10 + int64(p.s[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	if digits == 0 || digits > 15 || digits > 1 && p.s[start] == '0' {
		return 0, false
	}
	return n, true
}
