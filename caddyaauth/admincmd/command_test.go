package admincmd

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

const (
	grantsJSON  = `[{"id":"g1","issuer":"https://as.example","user":"alice","agent":"https://agent.example","resource":"https://api.example","scopes":["data.read","data.write"],"created":"2026-01-01T00:00:00Z","expires":"2026-01-31T00:00:00Z"}]`
	pendingJSON = `[{"id":"p1","issuer":"https://as.example","agent":"https://agent.example","resource":"https://api.example","scopes":["data.write"],"user":"bob","created":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:10:00Z","state":"approved"}]`
	keysJSON    = `[{"owner":"https://api.example","role":"resource","kid":"k2","alg":"EdDSA","state":"next","created":"2026-01-02T00:00:00Z","activates":"2026-01-02T01:00:00Z"},` +
		`{"owner":"https://api.example","role":"resource","kid":"k1","alg":"EdDSA","state":"retired","created":"2026-01-01T00:00:00Z","activates":"2026-01-01T00:00:00Z","retires":"2026-01-02T02:00:00Z"}]`
)

// fakeAdmin speaks the admin API contract of the aauth modules (see the package README).
type fakeAdmin struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string // "METHOD path body"
	fail     bool     // answer every request 500
}

func newFakeAdmin(t *testing.T) *fakeAdmin {
	f := &fakeAdmin{}
	mux := http.NewServeMux()
	apiErr := func(w http.ResponseWriter, status int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"error":"`+msg+`"}`)
	}
	jsonAnswer := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, body)
		}
	}
	mux.HandleFunc("GET /aauth/grants", jsonAnswer(grantsJSON))
	mux.HandleFunc("DELETE /aauth/grants/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "g1" {
			apiErr(w, http.StatusNotFound, "no such grant")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /aauth/pending", jsonAnswer(pendingJSON))
	mux.HandleFunc("GET /aauth/keys", jsonAnswer(keysJSON))
	mux.HandleFunc("POST /aauth/keys/rotate", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 && !bytes.Contains(b, []byte(`"https://api.example"`)) {
			apiErr(w, http.StatusNotFound, "unknown owner")
			return
		}
		jsonAnswer(keysJSON)(w, r)
	})
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		f.mu.Lock()
		f.requests = append(f.requests, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(b)))
		fail := f.fail
		f.mu.Unlock()
		if fail {
			apiErr(w, http.StatusInternalServerError, "storage is broken")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAdmin) addr() string { return f.Listener.Addr().String() }

func (f *fakeAdmin) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return ""
	}
	return f.requests[len(f.requests)-1]
}

// run executes `caddy aauth args...` as registered with caddycmd and returns its
// standard output and error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	reg, ok := caddycmd.Commands()["aauth"]
	if !ok {
		t.Fatal("the aauth command is not registered")
	}
	cmd := &cobra.Command{Use: reg.Name, Short: reg.Short, SilenceUsage: true, SilenceErrors: true}
	reg.CobraFunc(cmd)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("caddy aauth %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error with %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}

// TestLists: each list prints a table (a header, then one row per entry with the
// fields named, an absent time as "-") and with --json exactly what the API answered.
func TestLists(t *testing.T) {
	f := newFakeAdmin(t)
	for _, c := range []struct {
		args []string
		raw  string
		rows [][]string // per table line after the header: what it contains
		tail []string   // per line after the header: how it ends
	}{
		{[]string{"grants", "list"}, grantsJSON, [][]string{{"g1", "alice", "data.read data.write"}}, []string{"2026-01-31T00:00:00Z"}},
		{[]string{"pending", "list"}, pendingJSON, [][]string{{"p1", "approved", "bob", "data.write"}}, []string{"2026-01-01T00:10:00Z"}},
		{[]string{"keys", "list"}, keysJSON, [][]string{{"k2", "next", "resource"}, {"k1", "retired"}}, []string{" -", "2026-01-02T02:00:00Z"}},
	} {
		out := mustRun(t, append(c.args, "--address", f.addr())...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(c.rows)+1 || strings.Contains(lines[0], "-") {
			t.Fatalf("%v table:\n%s", c.args, out)
		}
		for i, row := range c.rows {
			for _, cell := range row {
				if !strings.Contains(lines[i+1], cell) {
					t.Errorf("%v row %d lacks %q:\n%s", c.args, i, cell, out)
				}
			}
			if !strings.HasSuffix(lines[i+1], c.tail[i]) {
				t.Errorf("%v row %d does not end with %q:\n%s", c.args, i, c.tail[i], out)
			}
		}
		if want := "GET /aauth/" + c.args[0]; f.last() != want {
			t.Errorf("%v: request %q, want %q", c.args, f.last(), want)
		}
		if out := mustRun(t, append(c.args, "--json", "--address", f.addr())...); out != c.raw {
			t.Errorf("%v --json: %s", c.args, out)
		}
	}
}

func TestGrantsRevoke(t *testing.T) {
	f := newFakeAdmin(t)
	if out := mustRun(t, "grants", "revoke", "g1", "--address", f.addr()); out != "revoked grant g1\n" {
		t.Fatalf("revoke: %q", out)
	}
	if f.last() != "DELETE /aauth/grants/g1" {
		t.Fatalf("request %q", f.last())
	}
	out, err := run(t, "grants", "revoke", "nope", "--address", f.addr())
	wantErr(t, err, `no grant "nope"`, "HTTP 404", "no such grant", f.addr())
	if out != "" {
		t.Fatalf("output on failure: %q", out)
	}
	_, err = run(t, "grants", "revoke", "--address", f.addr())
	wantErr(t, err, "accepts 1 arg")
}

func TestPendingListEmpty(t *testing.T) {
	f := newFakeAdmin(t)
	_, err := run(t, "pending", "list", "extra", "--address", f.addr())
	wantErr(t, err, "unknown command")

	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "[]")
	}))
	defer empty.Close()
	if out := mustRun(t, "pending", "list", "--address", empty.Listener.Addr().String()); out != "no pending consent requests\n" {
		t.Fatalf("empty: %q", out)
	}
}

func TestKeysRotate(t *testing.T) {
	f := newFakeAdmin(t)
	out := mustRun(t, "keys", "rotate", "--address", f.addr())
	if f.last() != "POST /aauth/keys/rotate" || !strings.HasPrefix(out, "rotated every keyring") || !strings.Contains(out, "k2") {
		t.Fatalf("rotate all: %q\n%s", f.last(), out)
	}
	out = mustRun(t, "keys", "rotate", "--owner", "https://api.example", "--json", "--address", f.addr())
	if f.last() != `POST /aauth/keys/rotate {"owner":"https://api.example"}` || out != keysJSON {
		t.Fatalf("rotate one: %q\n%s", f.last(), out)
	}
	_, err := run(t, "keys", "rotate", "--owner", "https://other.example", "--address", f.addr())
	wantErr(t, err, `no keyring of owner "https://other.example"`, "HTTP 404", "unknown owner")
}

func TestAdminFailures(t *testing.T) {
	f := newFakeAdmin(t)
	f.mu.Lock()
	f.fail = true
	f.mu.Unlock()
	for _, args := range [][]string{{"grants", "list"}, {"grants", "revoke", "g1"}, {"pending", "list"}, {"keys", "list"}, {"keys", "rotate"}} {
		_, err := run(t, append(args, "--address", f.addr())...)
		wantErr(t, err, "HTTP 500", "storage is broken", f.addr())
	}

	// Nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	_, err = run(t, "pending", "list", "--address", gone)
	wantErr(t, err, "admin API at "+gone+" is unreachable")

	// Something that is not the aauth admin API.
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html>hello</html>")
	}))
	defer html.Close()
	_, err = run(t, "keys", "list", "--address", html.Listener.Addr().String())
	wantErr(t, err, "not the expected JSON")
}

func TestAddressFromConfig(t *testing.T) {
	f := newFakeAdmin(t)
	cfg := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(cfg, []byte(`{"admin":{"listen":"`+f.addr()+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, "grants", "list", "--config", cfg); !strings.Contains(out, "g1") {
		t.Fatalf("--config: %s", out)
	}
	_, err := run(t, "grants", "list", "--config", filepath.Join(t.TempDir(), "missing.json"))
	wantErr(t, err, "admin API address")
}

func TestNeedsSubcommand(t *testing.T) {
	for _, args := range [][]string{nil, {"grants"}, {"keys"}} {
		_, err := run(t, args...)
		wantErr(t, err, "needs a subcommand")
	}
	_, err := run(t, "grants", "bogus")
	wantErr(t, err, `unknown command "bogus"`)
}
