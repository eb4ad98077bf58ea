// Package testhome keeps a test binary off the user's own files. Setup, called first in a
// TestMain, gives the process a HOME and XDG folders of its own, so neither Caddy run in
// process nor a binary a test starts reads or writes the user's Caddy config
// (~/.config/caddy/autosave.json), Caddy data (~/.local/share/caddy: instance.uuid, keys,
// certificates) or caches; and Quiet keeps Caddy's logs out of the output unless the tests
// run with -v.
package testhome

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

// dir is the folder Main made.
var dir string

// Main is a whole TestMain: Setup, Quiet, m.Run, then the folder is removed and the
// process exits with m.Run's status.
func Main(m *testing.M, prefix string) {
	var err error
	dir, err = Setup(prefix)
	if err == nil {
		err = Quiet()
	}
	if err != nil {
		panic(err)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// Dir is the temporary folder Main made, for tests that keep more state in it.
func Dir() string { return dir }

// goVars are the Go command's folders, which follow HOME and the XDG variables by default.
// Setup pins them to the user's values so that tests building binaries (go build) reuse the
// user's module and build caches and settings instead of starting from nothing.
var goVars = []string{"GOPATH", "GOMODCACHE", "GOCACHE", "GOENV"}

// Setup creates a temporary folder holding home, config, data and cache folders and points
// HOME, XDG_CONFIG_HOME, XDG_DATA_HOME and XDG_CACHE_HOME at them. Caddy computed its
// autosave path (caddy.ConfigAutosavePath) and default storage (caddy.DefaultStorage) from
// the user's folders when its package was initialised; Setup recomputes both. It returns
// the folder, which the caller removes after m.Run.
func Setup(prefix string) (string, error) {
	if err := pinGoVars(); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	for _, v := range []struct{ name, sub string }{
		{"HOME", "home"},
		{"XDG_CONFIG_HOME", "config"},
		{"XDG_DATA_HOME", "data"},
		{"XDG_CACHE_HOME", "cache"},
	} {
		d := filepath.Join(dir, v.sub)
		if err := os.Mkdir(d, 0o700); err != nil {
			return "", err
		}
		if err := os.Setenv(v.name, d); err != nil {
			return "", err
		}
	}
	caddy.ConfigAutosavePath = filepath.Join(caddy.AppConfigDir(), "autosave.json")
	caddy.DefaultStorage = &certmagic.FileStorage{Path: caddy.AppDataDir()}
	return dir, nil
}

// pinGoVars sets each of goVars that is unset to what `go env` reports under the user's
// HOME. Without a go command there is nothing to pin (tests that build binaries skip).
func pinGoVars() error {
	if _, err := exec.LookPath("go"); err != nil {
		return nil
	}
	out, err := exec.Command("go", append([]string{"env", "-json"}, goVars...)...).Output()
	if err != nil {
		return fmt.Errorf("go env: %w", err)
	}
	var env map[string]string
	if err := json.Unmarshal(out, &env); err != nil {
		return fmt.Errorf("go env: %w", err)
	}
	for _, v := range goVars {
		if os.Getenv(v) != "" || env[v] == "" {
			continue
		}
		if err := os.Setenv(v, env[v]); err != nil {
			return err
		}
	}
	return nil
}

// Quiet discards what the process writes to os.Stderr, where Caddy's default logger and
// the standard logger (caddytest) write, unless the tests run with -v. A test's own t.Log
// output and the output of failed child processes, which tests report with t.Log, are
// unaffected. It parses the command-line flags (as TestMain must before testing.Verbose).
func Quiet() error {
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Verbose() {
		return nil
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	os.Stderr = devNull
	log.SetOutput(io.Discard)
	return nil
}
