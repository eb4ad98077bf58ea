package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/redisstore/redistest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// redisGlobals are the global options of an instance keeping everything in the Redis
// at addr: Caddy's storage (signing keys) and the aauth state (records, single-use
// marks). Short timeouts so that requests fail fast while Redis is down.
func redisGlobals(addr string) string {
	return fmt.Sprintf(`storage redis {
		address %[1]s
		key_prefix cluster
		dial_timeout 500ms
		read_timeout 500ms
	}
	aauth {
		dev
		state redis {
			address %[1]s
			key_prefix cluster
			dial_timeout 500ms
			read_timeout 500ms
		}
	}`, addr)
}

// TestClusterOnRedis: two instances behind a balancer sharing one real redis-server
// (storage redis and aauth state redis): the races of TestClusterExactlyOnceOnFileStorage
// give exactly one outcome; then redis-server is killed (SIGKILL, append-only file on)
// and restarted mid-run: requests fail closed with 503 while it is down, nothing is
// issued twice, everything completes after it returns.
func TestClusterOnRedis(t *testing.T) {
	srv := redistest.Start(t) // fails when redis-server is missing (skips under -short)
	e := startClusterWith(t, redisGlobals(srv.Addr), withReplayGateway)
	t.Run("resource token spent on both", func(t *testing.T) { e.raceSpends(t, 20) })
	t.Run("signed POST sent to both", func(t *testing.T) { e.raceReplays(t, 20, 1) })
	t.Run("approved request polled on both", func(t *testing.T) { e.racePolls(t, 20) })
	t.Run("approve on a races deny on b", func(t *testing.T) { e.raceDecisions(t, 20) })
	t.Run("long poll on a sees approval on b", func(t *testing.T) { e.longPollAcross(t) })
	t.Run("redis killed and restarted", func(t *testing.T) { e.redisOutage(t, srv) })
}

// redisOutage: a token issued and a consent pending before redis-server dies; while it
// is down every token request and poll answers 503 temporarily_unavailable with
// Retry-After (and each instance logs a WARN line); after the restart the resource token
// spent before the crash is still refused, the one refused during the outage gives
// exactly one token, and the pending consent completes once.
func (e *clusterEnv) redisOutage(t *testing.T, srv *redistest.Server) {
	spent := challengeFor(t, e.cred, e.apiID+"/read/x")
	if a := e.tokenRequest(spent, ""); a.status != http.StatusOK {
		t.Fatalf("token before the outage: %d %v %.300s", a.status, a.err, a.body)
	}
	loc, code := e.pending(t, "")
	during := challengeFor(t, e.cred, e.apiID+"/read/x")

	srv.Kill()
	for i, a := range parallel(10, func(in string) answer {
		return e.tokenRequest(map[bool]string{true: spent, false: during}[in == "a"], in)
	}) {
		expectUnavailable(t, fmt.Sprintf("token request %d during the outage", i), a)
	}
	expectUnavailable(t, "poll during the outage", e.poll(loc, "a", 0))
	post := e.signPost(t, -1)
	expectUnavailable(t, "gateway POST during the outage", e.sendGateway(post, "b"))
	for i, p := range e.procs {
		if !strings.Contains(p.out.String(), "shared state unavailable") {
			t.Errorf("instance %d logged no WARN line about the unavailable state", i)
		}
	}

	srv.Restart()
	if a := e.tokenRequest(spent, "b"); a.status != http.StatusBadRequest || !strings.Contains(a.body, wire.CodeInvalidResourceToken) {
		t.Errorf("resource token spent before the crash, after the restart: %d %.300s; want 400 (used)", a.status, a.body)
	}
	n, st := countTokens(t, parallel(20, func(in string) answer { return e.tokenRequest(during, in) }))
	if n != 1 {
		t.Errorf("the resource token refused during the outage gave %d tokens after the restart, want 1 (statuses %v)", n, st)
	}
	n, st = countAccepted(parallel(20, func(in string) answer { return e.sendGateway(post, in) }))
	if n != 1 {
		t.Errorf("the gateway POST refused during the outage, resent 20 times after the restart: %d accepted, want 1 (statuses %v)", n, st)
	}
	if err := e.userOn("b", nil).approve(code, "alice", alicePassword); err != nil {
		t.Fatalf("approving after the restart: %v", err)
	}
	n, st = countTokens(t, parallel(10, func(in string) answer { return e.poll(loc, in, 0) }))
	if n != 1 {
		t.Errorf("the consent pending across the outage gave %d tokens, want 1 (statuses %v)", n, st)
	}
}

// expectUnavailable checks a fail-closed answer: 503, Retry-After, the JSON error.
func expectUnavailable(t *testing.T, what string, a answer) {
	t.Helper()
	if a.err != nil {
		t.Errorf("%s: %v", what, a.err)
		return
	}
	var body struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal([]byte(a.body), &body)
	if a.status != http.StatusServiceUnavailable || body.Error != wire.CodeTemporarilyUnavailable || a.header.Get("Retry-After") == "" {
		t.Errorf("%s: %d Retry-After %q %.200s; want 503 temporarily_unavailable with Retry-After", what, a.status, a.header.Get("Retry-After"), a.body)
	}
}
