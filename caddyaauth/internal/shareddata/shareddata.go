// Package shareddata locates the third-party test data sets (structured-field tests,
// Wycheproof) that CI provides at ../shared/testdata beside the project root. Tests that
// use them fail, with a message naming the missing folder, where the folder is absent
// (a missing dependency must not pass silently); -short skips them.
package shareddata

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Find returns ../shared/testdata/<sub> relative to the directory holding go.mod, found
// by walking up from the working directory.
func Find(sub string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test directory; cannot locate ../shared/testdata/%s", sub)
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "testdata", sub)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("test data %s is missing (expected ../shared/testdata/%s beside the project root %s)", p, sub, dir)
	}
	return p, nil
}

// Dir is Find for tests: it fails t with the reason when the data is absent (skips it
// under -short).
func Dir(t testing.TB, sub string) string {
	t.Helper()
	p, err := Find(sub)
	if err != nil {
		if testing.Short() {
			t.Skip(err.Error())
		}
		t.Fatal(err.Error())
	}
	return p
}
