package caddyaauth

import (
	"slices"
	"strings"
	"testing"
)

// grants agrees with splitting the scope list into fields.
func TestGrantsMatchesFields(t *testing.T) {
	for _, scope := range []string{"", " ", "a", "a b", "  a  b ", "ab", "a\tb", "data.read data.write", "x a.b"} {
		for _, want := range []string{"", "a", "b", "ab", "a b", "data.write", "data", "a.b"} {
			if got, exp := grants(scope, want), slices.Contains(strings.Fields(scope), want); got != exp {
				t.Errorf("grants(%q, %q) = %v, want %v", scope, want, got, exp)
			}
		}
	}
}
