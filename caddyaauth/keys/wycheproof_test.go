package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// wycheproofFile is the subset of the Wycheproof verify-test schema these tests read.
type wycheproofFile struct {
	Algorithm     string `json:"algorithm"`
	NumberOfTests int    `json:"numberOfTests"`
	TestGroups    []struct {
		PublicKey struct {
			PK           string `json:"pk"`           // Ed25519, hex
			Uncompressed string `json:"uncompressed"` // P-256, hex 04‖X‖Y
		} `json:"publicKey"`
		Tests []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Flags   []string `json:"flags"`
			Msg     string   `json:"msg"`
			Sig     string   `json:"sig"`
			Result  string   `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func loadWycheproof(t *testing.T, name string) *wycheproofFile {
	t.Helper()
	dir := sharedTestdata(t, "wycheproof")
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("Wycheproof file %s is missing from %s: %v", name, dir, err)
	}
	var f wycheproofFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &f
}

type wycheproofTally struct{ total, valid, invalid, acceptable, keyRejected int }

// runWycheproof checks every case of f with PublicKey.Verify; mkKey builds the group key
// (an error means the group's key is refused, and then every case must be invalid).
func runWycheproof(t *testing.T, f *wycheproofFile, mkKey func(pkHex, uncompressedHex string) (*PublicKey, error)) wycheproofTally {
	t.Helper()
	var n wycheproofTally
	for gi, g := range f.TestGroups {
		pub, keyErr := mkKey(g.PublicKey.PK, g.PublicKey.Uncompressed)
		for _, tc := range g.Tests {
			n.total++
			switch tc.Result {
			case "valid":
				n.valid++
			case "invalid":
				n.invalid++
			case "acceptable":
				n.acceptable++
			default:
				t.Errorf("tcId %d: unknown result %q", tc.TcID, tc.Result)
			}
			if keyErr != nil {
				n.keyRejected++
				if tc.Result == "valid" {
					t.Errorf("group %d tcId %d: key refused (%v) but the case is valid", gi, tc.TcID, keyErr)
				}
				continue
			}
			msg, err1 := hex.DecodeString(tc.Msg)
			sig, err2 := hex.DecodeString(tc.Sig)
			if err1 != nil || err2 != nil {
				t.Fatalf("tcId %d: bad hex in the test file", tc.TcID)
			}
			ok := pub.Verify(msg, sig) == nil
			switch tc.Result {
			case "valid":
				if !ok {
					t.Errorf("tcId %d (%s %v): valid signature rejected", tc.TcID, tc.Comment, tc.Flags)
				}
			case "invalid":
				if ok {
					t.Errorf("tcId %d (%s %v): invalid signature accepted", tc.TcID, tc.Comment, tc.Flags)
				}
			case "acceptable":
				t.Logf("tcId %d (%s %v): acceptable case, Verify ok=%v", tc.TcID, tc.Comment, tc.Flags, ok)
			}
		}
	}
	if n.total != f.NumberOfTests {
		t.Errorf("counted %d cases, the file declares numberOfTests=%d", n.total, f.NumberOfTests)
	}
	return n
}

// SECURITY-CASES D1/D5: stdlib Ed25519 must keep matching every Wycheproof verdict.
func TestWycheproofEd25519(t *testing.T) {
	f := loadWycheproof(t, "ed25519_test.json")
	n := runWycheproof(t, f, func(pkHex, _ string) (*PublicKey, error) {
		pk, err := hex.DecodeString(pkHex)
		if err != nil {
			return nil, err
		}
		return New(ed25519.PublicKey(pk), "")
	})
	if n.total != 151 {
		t.Fatalf("ran %d Ed25519 cases, want 151", n.total)
	}
	t.Logf("Ed25519: %d cases (%d valid, %d invalid, %d acceptable, %d under a refused key)", n.total, n.valid, n.invalid, n.acceptable, n.keyRejected)
}

// SECURITY-CASES D2: ECDSA P-256 SHA-256 with raw r‖s (RFC 9421 §3.3.4).
func TestWycheproofECDSAP256P1363(t *testing.T) {
	f := loadWycheproof(t, "ecdsa_secp256r1_sha256_p1363_test.json")
	n := runWycheproof(t, f, func(_, uncHex string) (*PublicKey, error) {
		b, err := hex.DecodeString(uncHex)
		if err != nil {
			return nil, err
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b)
		if err != nil {
			return nil, err
		}
		return New(pub, "")
	})
	if n.total != 262 {
		t.Fatalf("ran %d P-256 cases, want 262", n.total)
	}
	t.Logf("P-256 P1363: %d cases (%d valid, %d invalid, %d acceptable, %d under a refused key)", n.total, n.valid, n.invalid, n.acceptable, n.keyRejected)
}
