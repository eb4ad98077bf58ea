package keys

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedTestdata returns ../shared/testdata/<sub> relative to the directory holding
// go.mod (found by walking up from the test's working directory). It skips the test
// with a message naming the missing folder when the data set is not there.
func sharedTestdata(t testing.TB, sub string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skipf("no go.mod above the test directory; cannot locate ../shared/testdata/%s", sub)
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "testdata", sub)
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		t.Skipf("test data folder %s is missing (expected ../shared/testdata/%s beside the project root %s)", p, sub, dir)
	}
	return p
}
