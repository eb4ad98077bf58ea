package ids

import "testing"

func TestCodes(t *testing.T) {
	for range 100 {
		c := NewCode()
		if n, ok := NormalizeCode(c); !ok || n != c {
			t.Fatalf("NewCode %q does not normalise to itself (%q %v)", c, n, ok)
		}
	}
	for in, want := range map[string]string{"abcd-efgh": "ABCDEFGH", "0oil 2345": "0011" + "2345", "ABCD EFGH": "ABCDEFGH"} {
		if got, ok := NormalizeCode(in); !ok || got != want {
			t.Errorf("NormalizeCode(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "ABCDEFG", "ABCDEFGHJ", "ABCDEFGU", "ABCDÉFGH"} {
		if _, ok := NormalizeCode(bad); ok {
			t.Errorf("NormalizeCode(%q) accepted", bad)
		}
	}
}

func TestRandomIDs(t *testing.T) {
	id := NewRandomID(16)
	if !ValidRandomID(id, 16) || ValidRandomID(id, 32) || ValidRandomID(id[:len(id)-1]+"/", 16) {
		t.Fatalf("ValidRandomID misjudges %q", id)
	}
	if NewRandomID(16) == id {
		t.Fatal("two equal random ids")
	}
}

// TestRandomIDNoLeadingDash: a command line would read an id beginning with "-" as a
// flag, so none does (about 1 in 64 would by chance: 20,000 draws make a miss of the
// rule all but certain to show), while ids of the older form stay valid.
func TestRandomIDNoLeadingDash(t *testing.T) {
	for range 20000 {
		if id := NewRandomID(16); id[0] == '-' {
			t.Fatalf("id %q begins with -", id)
		}
	}
	if !ValidRandomID("-k2htSeASPkuO6kggE8hkg", 16) {
		t.Error("an id of the older form (leading -) is no longer valid")
	}
}
