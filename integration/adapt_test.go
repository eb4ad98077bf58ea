package integration

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of the golden adapt tests")

// TestCaddyfileAdaptToJSON adapts every integration/caddyfile_adapt/*.caddyfiletest file
// (a Caddyfile, a line of ten dashes, then the expected JSON or an expected error text)
// and compares the result. An expected error comes from the adapter or, for a semantic
// check, from validating the adapted config. Run with -update to rewrite the JSON halves after a change,
// then review the diff.
func TestCaddyfileAdaptToJSON(t *testing.T) {
	files, err := filepath.Glob("caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.SplitN(string(data), "----------", 2)
			if len(parts) != 2 {
				t.Fatalf("%s: missing ---------- separator", file)
			}
			caddyfile, expected := strings.TrimSpace(parts[0])+"\n", strings.TrimSpace(parts[1])
			adapter := caddyconfig.GetAdapter("caddyfile")
			out, _, adaptErr := adapter.Adapt([]byte(caddyfile), nil)
			if *update && adaptErr == nil && strings.HasPrefix(expected, "{") {
				var buf bytes.Buffer
				if err := json.Indent(&buf, out, "", "\t"); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(strings.TrimSpace(parts[0])+"\n----------\n"+buf.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.HasPrefix(expected, "{") {
				if !caddytest.CompareAdapt(t, file, caddyfile, "caddyfile", expected) {
					t.Errorf("adapted JSON of %s differs", file)
				}
				// Adapting twice gives the same bytes (caddytest relies on it).
				out2, _, _ := adapter.Adapt([]byte(caddyfile), nil)
				if !bytes.Equal(out, out2) {
					t.Errorf("adaptation of %s is not deterministic", file)
				}
				return
			}
			if adaptErr == nil {
				// Semantic checks live in the modules' Validate (so JSON configs get
				// them too): load the adapted config as `caddy validate` does.
				var cfg caddy.Config
				if err := json.Unmarshal(out, &cfg); err != nil {
					t.Fatal(err)
				}
				adaptErr = caddy.Validate(&cfg)
			}
			if adaptErr == nil {
				t.Fatalf("expected an error containing %q, got none", expected)
			}
			if !strings.Contains(adaptErr.Error(), expected) {
				t.Fatalf("error %q does not contain %q", adaptErr, expected)
			}
		})
	}
}
