package aauthevents

import "testing"

// TestData leaves out empty values; a nil Emitter emits nothing.
func TestData(t *testing.T) {
	d := Data("issuer", "https://as.example", "sub", "", "kind", "direct", "odd")
	if len(d) != 2 || d["issuer"] != "https://as.example" || d["kind"] != "direct" {
		t.Fatalf("data %v", d)
	}
	var e *Emitter
	e.Emit(TokenIssued, d)
}
