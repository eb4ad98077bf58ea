package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// logAppendConfig writes the site's access log as JSON to logPath, with the verdict's
// placeholders appended (log_append reads them after the handlers returned), and has a
// pseudonym route in each layout. /e/* passes to a backend that is down: the error
// routes then run an aauth handler of their own (guarded by aauth_strip), whose verdict
// is not the primary route's and whose refusal they answer themselves.
func logAppendConfig(t *testing.T, backend *echoBackend, logPath string) string {
	return globalOptions(t, true) + fmt.Sprintf(`
http://api.localhost:9080 {
	log {
		output file %[2]s
		format json
	}
	log_append aauth_error {http.aauth.error}
	log_append aauth_description {http.aauth.error_description}
	log_append aauth_level {http.aauth.level}
	aauth_strip
	handle_errors {
		log_append aauth_error_route {http.aauth.error}
		aauth {
			require identity
		}
		respond "error route passed" 299
	}
	aauth /top/* {
		require pseudonym
	}
	handle /h/* {
		aauth {
			require pseudonym
		}
		reverse_proxy %[1]s
	}
	route /r/* {
		aauth {
			require pseudonym
		}
		reverse_proxy %[1]s
	}
	handle_path /p/* {
		aauth {
			require pseudonym
		}
		reverse_proxy %[1]s
	}
	handle /n/* {
		route {
			handle /n/deep/* {
				aauth {
					require pseudonym
				}
				reverse_proxy %[1]s
			}
		}
	}
	handle /e/* {
		aauth {
			require pseudonym
		}
		reverse_proxy 127.0.0.1:9
	}
	reverse_proxy %[1]s
}
`, backend.addr(), logPath)
}

// accessLine is what the test reads of an access log line.
type accessLine struct {
	Request struct {
		URI string `json:"uri"`
	} `json:"request"`
	Status      int     `json:"status"`
	Error       *string `json:"aauth_error"`
	Description *string `json:"aauth_description"`
	Level       *string `json:"aauth_level"`
	ErrorRoute  *string `json:"aauth_error_route"`
}

// accessLog waits until the log at path has a line for each uri and returns the last
// line of each.
func accessLog(t *testing.T, path string, uris ...string) map[string]accessLine {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]accessLine{}
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var l accessLine
				if json.Unmarshal(sc.Bytes(), &l) == nil && l.Request.URI != "" {
					got[l.Request.URI] = l
				}
			}
			f.Close()
		}
		missing := ""
		for _, u := range uris {
			if _, ok := got[u]; !ok {
				missing = u
			}
		}
		if missing == "" {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access log line for %s in %s", missing, path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func str(p *string) string {
	if p == nil {
		return "<absent>"
	}
	return *p
}

// TestLogAppendVerdictPlaceholders: in every layout, log_append finds the refusal's
// {http.aauth.error} and {http.aauth.error_description} (a refused request) or the
// verified {http.aauth.level} (a passed one) after the handlers returned, and never a
// value of another request. In the error routes an aauth handler decides afresh (the
// primary route's verdict is already decided): its refusal is the one logged.
func TestLogAppendVerdictPlaceholders(t *testing.T) {
	backend := newEchoBackend(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	caddytest.NewTester(t).InitServer(logAppendConfig(t, backend, logPath), "caddyfile")
	cred, _ := hwkCredential(t)
	signed := agentClient(&agent.Transport{Pseudonym: cred})

	var refusedURIs, passedURIs []string
	for _, p := range []string{"/top/x", "/h/x", "/r/x", "/p/x", "/n/deep/x"} {
		refused := p + "?refused"
		get(t, plainClient(), api+refused).mustStatus(t, http.StatusUnauthorized)
		refusedURIs = append(refusedURIs, refused)
		passed := p + "?passed"
		get(t, signed, api+passed).mustStatus(t, http.StatusOK)
		passedURIs = append(passedURIs, passed)
	}
	// A pseudonym passes /e/*, whose signature headers are then removed; the backend is
	// down, so the error routes run, and their aauth handler finds the request unsigned:
	// its refusal is the answer, and the one logged.
	errRes := get(t, signed, api+"/e/x?error-route")
	if errRes.status != http.StatusUnauthorized {
		t.Fatalf("error route: status %d (%s), want the error routes' aauth handler to refuse with 401", errRes.status, errRes.body)
	}
	lines := accessLog(t, logPath, append(append(refusedURIs, passedURIs...), "/e/x?error-route")...)
	for _, u := range refusedURIs {
		l := lines[u]
		if str(l.Error) != "invalid_request" || str(l.Description) != "request is not signed" || l.Level != nil && *l.Level != "" {
			t.Errorf("%s: aauth_error %s, aauth_description %s, aauth_level %s: want invalid_request, request is not signed, none",
				u, str(l.Error), str(l.Description), str(l.Level))
		}
	}
	for _, u := range passedURIs {
		l := lines[u]
		if str(l.Level) != "pseudonym" || l.Error != nil && *l.Error != "" {
			t.Errorf("%s: aauth_level %s, aauth_error %s: want pseudonym and no error", u, str(l.Level), str(l.Error))
		}
	}
	// log_append in the primary routes reads the placeholders when those routes return
	// (the pass); the one in the error routes sees the error routes' refusal.
	if l := lines["/e/x?error-route"]; str(l.ErrorRoute) != "invalid_request" || l.Status != http.StatusUnauthorized || l.Error != nil && *l.Error != "" {
		t.Errorf("error route: status %d, aauth_error_route %s, aauth_error %s: want 401, invalid_request from the error routes' handler, none from the primary pass",
			l.Status, str(l.ErrorRoute), str(l.Error))
	}
}
