package httpsig

import (
	"reflect"
	"testing"
)

var canonicalInputs = []string{
	a1Input,
	`sig=("@method" "@authority" "@path" "@query" "content-type" "content-digest" "signature-key");created=1774920963;expires=1774921000;alg="ed25519";keyid="k";nonce="n";tag="t"`,
	`sig=();created=999999999999999`,
	`a*b.c=("x");created=0`,
	`sig=("");created=1`,
	`sig=("@method" "@method");created=1`,
	`sig=("A");created=1;nonce=""`,
	`sig=("@method");alg=ed25519`, // a Token, refused later
	`sig=("@method" "@authority");created=notanumber`,
	`sig=();created=1;x=*a:b/c!#$%&'+-.^_|~`,
}

var generalInputs = []string{
	`sig=( "@method");created=1`,                  // inner-list spacing
	`sig=("@method"  "@path");created=1`,          // two spaces
	`sig=("@method");created=01`,                  // leading zero
	`sig=("@method");created=1.5`,                 // decimal
	`sig=("@method");created=-1`,                  // negative
	`sig=("@method");created=1;created=2`,         // repeated parameter
	`sig=("@method");created`,                     // boolean
	`sig=("a\"b");created=1`,                      // escape
	`sig=("@method";x=1);created=1`,               // item parameter
	`sig=("@method");created=1, sig=();created=2`, // two members
	`sig=("@method");created=1 `,                  // trailing space
	`sig=("@method");created=1234567890123456`,    // 16 digits
	`sig="x"`,                   // not an inner list
	`Sig=("@method");created=1`, // not a key
}

// parseCanonicalInput and parseGeneralInput read in into a fresh list.
func parseCanonicalInput(in string) (*inputList, bool) {
	il := new(inputList)
	return il, il.parseCanonical(in)
}

func parseGeneralInput(in string) (*inputList, error) {
	il := new(inputList)
	if err := il.parseGeneral(in); err != nil {
		return nil, err
	}
	return il, nil
}

// The canonical reader gives exactly what the RFC 8941 parser gives, and leaves every
// other form to it.
func TestCanonicalInputMatchesRFC8941(t *testing.T) {
	for _, in := range canonicalInputs {
		fast, ok := parseCanonicalInput(in)
		if !ok {
			t.Errorf("%s: not read as canonical", in)
			continue
		}
		matchGeneral(t, in, fast)
	}
	for _, in := range generalInputs {
		if il, ok := parseCanonicalInput(in); ok {
			t.Errorf("%s: read as canonical: %+v", in, il)
		}
	}
}

// FuzzCanonicalInput: whenever the canonical reader accepts a value, the RFC 8941 parser
// accepts it too with the same label, components, parameters and serialisation.
func FuzzCanonicalInput(f *testing.F) {
	for _, in := range append(canonicalInputs, generalInputs...) {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		fast, ok := parseCanonicalInput(in)
		if !ok {
			return
		}
		matchGeneral(t, in, fast)
	})
}

// matchGeneral fails unless the general parser reads in as the canonical reader did.
func matchGeneral(t *testing.T, in string, fast *inputList) {
	t.Helper()
	general, err := parseGeneralInput(in)
	if err == nil {
		general.serialized, err = general.serialization()
		general.general = nil
	}
	if err != nil {
		t.Fatalf("%q: canonical reader accepted what RFC 8941 refuses: %v", in, err)
	}
	if !sameInput(fast, general) {
		t.Fatalf("%q:\nfast    %+v\ngeneral %+v", in, fast, general)
	}
}

// sameInput compares two readings, an empty list being the same as none.
func sameInput(a, b *inputList) bool {
	norm := func(l *inputList) inputList {
		c := inputList{label: l.label, items: l.items, params: l.params, serialized: l.serialized, general: l.general}
		if len(c.items) == 0 {
			c.items = nil
		}
		if len(c.params) == 0 {
			c.params = nil
		}
		return c
	}
	return reflect.DeepEqual(norm(a), norm(b))
}
