package wire

import (
	"encoding/json"
	"testing"
)

// Error.JSON writes exactly what json.Marshal writes, on the fast path and off it.
func TestErrorJSONMatchesMarshal(t *testing.T) {
	for _, e := range []Error{
		{Code: CodeInvalidRequest, Description: "request is not signed"},
		{Code: "x", Description: ""},
		{Code: "a\"b", Description: `back\slash`},
		{Code: "c", Description: "<script>&"},
		{Code: "c", Description: "line\nbreak\t"},
		{Code: "c", Description: "caf\u00e9 \u2028"},
		{Code: "c", Description: "bad utf8 \xff"},
		{Code: "c", Description: "d", RequiredComponents: []string{"@method"}},
	} {
		want, _ := json.Marshal(e)
		if got := e.JSON(); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", e.Description, got, want)
		}
	}
}

// A challenge with only require is written as the general formatter writes it.
func TestPlainChallengeFormat(t *testing.T) {
	for c, v := range plainChallenges {
		delete(plainChallenges, c)
		general, err := c.Format()
		plainChallenges[c] = v
		if err != nil || general != v {
			t.Errorf("%+v: precomputed %q, formatted %q (%v)", c, v, general, err)
		}
	}
	if _, err := (Challenge{Require: "Not a token"}).Format(); err == nil {
		t.Error("an invalid require was formatted")
	}
}
