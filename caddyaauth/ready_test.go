package caddyaauth

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/standard"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"
)

// readyProbe records each printed line together with whether the server answered an HTTP
// request at the moment the line was printed.
type readyProbe struct {
	mu    sync.Mutex
	url   string
	lines []string
}

func (p *readyProbe) Write(b []byte) (int, error) {
	status := "no answer"
	if res, err := http.Get(p.url); err == nil {
		res.Body.Close()
		status = res.Status
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, fmt.Sprintf("%q while the server answered %s", b, status))
	return len(b), nil
}

func (p *readyProbe) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.lines
	p.lines = nil
	return l
}

// TestReadyMessage runs Caddy in process: the ready message is printed once per start and
// reload, when the server already answers, and never by validate; a message of two lines
// is refused.
func TestReadyMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that runs Caddy in process")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	probe := &readyProbe{url: "http://" + addr + "/"}
	old := readyOut
	readyOut = probe
	t.Cleanup(func() { readyOut = old })

	config := func(msg, body string) []byte {
		m, _ := json.Marshal(msg)
		return []byte(fmt.Sprintf(`{
			"admin": {"disabled": true, "config": {"persist": false}},
			"storage": {"module": "file_system", "root": %q},
			"logging": {"logs": {"default": {"level": "ERROR"}}},
			"apps": {
				"aauth": {"ready_message": %s},
				"http": {"servers": {"s": {
					"listen": [%q],
					"automatic_https": {"disable": true},
					"routes": [{"handle": [{"handler": "static_response", "body": %q}]}]
				}}}
			}
		}`, t.TempDir(), m, addr, body))
	}
	want := `"ready: try curl\n" while the server answered 200 OK`

	var cfg caddy.Config
	if err := json.Unmarshal(config("ready: try curl", "one"), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatal(err)
	}
	if got := probe.take(); len(got) != 0 {
		t.Fatalf("validate printed %v", got)
	}

	if err := caddy.Load(config("ready: try curl", "one"), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	if got := probe.take(); len(got) != 1 || got[0] != want {
		t.Fatalf("after the start: got %v, want [%s]", got, want)
	}
	if err := caddy.Load(config("ready: try curl", "two"), true); err != nil {
		t.Fatal(err)
	}
	if got := probe.take(); len(got) != 1 || got[0] != want {
		t.Fatalf("after a reload: got %v, want [%s]", got, want)
	}

	err = caddy.Load(config("ready\nsecond line", "three"), true)
	if err == nil || !strings.Contains(err.Error(), "ready_message must be one line") {
		t.Fatalf("a two-line message: got %v", err)
	}
	if got := probe.take(); len(got) != 0 {
		t.Fatalf("a refused config printed %v", got)
	}
}

// TestReadyMessageCaddyfile parses ready_message in the global option and refuses a
// missing or extra argument and a second line.
func TestReadyMessageCaddyfile(t *testing.T) {
	v, err := parseGlobal(caddyfile.NewTestDispenser("aauth {\n ready_message \"ready: try aauth fetch\"\n}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(v.(httpcaddyfile.App).Value); !strings.Contains(got, `"ready_message":"ready: try aauth fetch"`) {
		t.Fatalf("parse: %s", got)
	}
	for _, bad := range []string{"ready_message", "ready_message one two", "ready_message `one\ntwo`"} {
		if _, err := parseGlobal(caddyfile.NewTestDispenser("aauth {\n"+bad+"\n}"), nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
