package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Two Caddy processes run the same auth server (one issuer) on one file_system storage,
// behind a load balancer in the test that sends each request to instance a or b (round
// robin, or the one named in instanceHeader). Every single-use and state-machine step
// must hold exactly once across the two processes.

// instanceHeader names the instance ("a" or "b") the load balancer sends a request to.
const instanceHeader = "X-Cluster-Instance"

type clusterEnv struct {
	dir, bin string
	lbURL    string // the issuer: the load balancer's origin
	apiID    string // the gateway (resource), served by instance a
	direct   [2]string
	agentSrv *agentServer
	cred     *agent.Credential
	hashes   map[string]string
	rr       atomic.Uint64
	// globals are the instances' global options about state (storage, aauth), with %s
	// for the test's directory; empty: one file_system storage in that directory.
	globals string
	procs   [2]*process
	// gateway, when set, adds a site to every instance (see withReplayGateway);
	// gwDirect are their origins.
	gateway  func(port, backend string) string
	gwDirect [2]string
}

func startCluster(t *testing.T) *clusterEnv { return startClusterWith(t, "") }

// startClusterWith starts the two instances with globals (see clusterEnv.globals).
func startClusterWith(t *testing.T, globals string, opts ...func(*clusterEnv)) *clusterEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test that builds and runs two caddy processes")
	}
	e := &clusterEnv{dir: t.TempDir(), agentSrv: newAgentServer(t), globals: globals}
	for _, o := range opts {
		o(e)
	}
	if e.globals == "" {
		e.globals = "storage file_system %s/storage\n\taauth {\n\t\tdev\n\t}"
	}
	e.cred = agent.JWKSURI(e.agentSrv.signer, e.agentSrv.id)
	e.bin = filepath.Join(e.dir, "caddy")
	goBuild(t, moduleRoot(t), e.bin, "./cmd/caddy")
	e.hashes = bcryptHashes(t, map[string]string{"alice": alicePassword})
	backend := newEchoBackend(t)
	e.apiID = "http://localhost:" + freePort(t)
	e.startBalancer(t)
	for i := range 2 {
		port := freePort(t)
		e.direct[i] = "http://127.0.0.1:" + port
		e.startInstance(t, i, port, backend.addr())
	}
	return e
}

// startBalancer serves the issuer origin (see newBalancer).
func (e *clusterEnv) startBalancer(t *testing.T) {
	e.lbURL = newBalancer(t, &e.rr, func(i int) string { return e.direct[i] })
}

// newBalancer serves an origin in front of two instances, forwarding each request (Host
// kept, so signatures over @authority still match) to the instance instanceHeader names,
// else round robin (counted in rr). target(i) is instance i's origin.
func newBalancer(t *testing.T, rr *atomic.Uint64, target func(i int) string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:"+freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		i := int(rr.Add(1) % 2)
		switch pr.In.Header.Get(instanceHeader) {
		case "a":
			i = 0
		case "b":
			i = 1
		}
		u, _ := url.Parse(target(i))
		pr.SetURL(u)
		pr.Out.Host = pr.In.Host
	}}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// startInstance runs caddy process i with its own home and admin off, on the shared
// storage; instance a also serves the gateway.
func (e *clusterEnv) startInstance(t *testing.T, i int, port, backend string) {
	home := filepath.Join(e.dir, fmt.Sprintf("home%d", i))
	for _, d := range []string{"data", "config"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"XDG_DATA_HOME=" + filepath.Join(home, "data"), "XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "HOME=" + home}
	cfg := fmt.Sprintf(`{
	admin off
	%s
}

http://:%s {
	aauth_server {
		issuer %s
		token_rate_limit off
		policy {
			consent scope data.write
			allow scope data.read
			default deny
		}
%s	}
}
`, strings.ReplaceAll(e.globals, "%s", e.dir), port, e.lbURL, userLines(e.hashes, "\t\t"))
	if e.gateway != nil {
		gw := freePort(t)
		e.gwDirect[i] = "http://127.0.0.1:" + gw
		cfg += e.gateway(gw, backend)
	}
	if i == 0 {
		cfg += fmt.Sprintf(`
%s {
	aauth /read/* {
		require auth-token
		resource %s
		auth_server %s
		scope data.read
	}
	%s
	reverse_proxy %s
}
`, e.apiID, e.apiID, e.lbURL, strings.Replace(apiBlock(e.apiID, e.lbURL), "aauth {", "aauth /write/* {", 1), backend)
	}
	file := filepath.Join(e.dir, fmt.Sprintf("Caddyfile%d", i))
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, "caddy-"+"ab"[i:i+1], e.dir, env, e.bin, "run", "--config", file, "--adapter", "caddyfile")
	e.procs[i] = p
	waitCaddy(t, p, e.direct[i]+"/.well-known/aauth-issuer.json")
}

// answer is one HTTP answer, read in a goroutine.
type answer struct {
	status int
	body   string
	err    error
	header http.Header
}

// send signs req as the agent (with a fresh nonce, so identical requests differ) and
// sends it through the balancer to instance ("a", "b" or "" for round robin).
func (e *clusterEnv) send(req *http.Request, instance string, extra ...string) answer {
	if instance != "" {
		req.Header.Set(instanceHeader, instance)
	}
	if err := httpsig.Sign(req, e.cred.Signer, e.cred.SigKey(), httpsig.SignOptions{Nonce: httpsig.NewNonce(), Extra: extra}); err != nil {
		return answer{err: err}
	}
	resp, err := plainClient().Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), err: err, header: resp.Header}
}

// tokenRequest posts a signed token request for rt to instance.
func (e *clusterEnv) tokenRequest(rt, instance string) answer {
	b, _ := json.Marshal(map[string]string{"resource_token": rt})
	req, _ := http.NewRequest("POST", e.lbURL+"/token", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	httpsig.SetContentDigest(req, b)
	return e.send(req, instance, "content-type", "content-digest")
}

// poll sends a signed GET to the pending URL, with Prefer: wait=wait when wait > 0.
func (e *clusterEnv) poll(pendingURL, instance string, wait int) answer {
	req, _ := http.NewRequest("GET", pendingURL, nil)
	if wait > 0 {
		req.Header.Set("Prefer", fmt.Sprintf("wait=%d", wait))
	}
	return e.send(req, instance)
}

// pending starts a consent request (data.write) on instance and returns its pending
// URL and interaction code.
func (e *clusterEnv) pending(t *testing.T, instance string) (string, string) {
	t.Helper()
	rt := challengeFor(t, e.cred, e.apiID+"/write/x")
	a := e.tokenRequest(rt, instance)
	if a.err != nil || a.status != http.StatusAccepted {
		t.Fatalf("token request: %d %v %.300s", a.status, a.err, a.body)
	}
	var p wire.PendingResponse
	if err := json.Unmarshal([]byte(a.body), &p); err != nil || p.Location == "" || p.Code == "" {
		t.Fatalf("202 body %q: %v", a.body, err)
	}
	return p.Location, p.Code
}

// pinned routes every request of the returned client to instance.
type pinned struct {
	base     http.RoundTripper
	instance string
}

func (p pinned) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(instanceHeader, p.instance)
	return p.base.RoundTrip(r)
}

// userOn is a web user at the issuer whose requests all go to instance, sharing jar
// (and so the signed-in session) with from when from is not nil.
func (e *clusterEnv) userOn(instance string, from *webUser) *webUser {
	u := newWebUser(e.lbURL)
	if from != nil {
		u.c.Jar = from.c.Jar
		u.last = from.last
	}
	u.c.Transport = pinned{base: u.c.Transport, instance: instance}
	return u
}

// countTokens counts the 200 answers carrying an auth token.
func countTokens(t *testing.T, answers []answer) (tokens int, statuses map[int]int) {
	t.Helper()
	statuses = map[int]int{}
	for _, a := range answers {
		if a.err != nil {
			t.Errorf("request failed: %v", a.err)
			continue
		}
		statuses[a.status]++
		var tr wire.TokenResponse
		if a.status == http.StatusOK && json.Unmarshal([]byte(a.body), &tr) == nil && tr.AuthToken != "" {
			tokens++
		}
	}
	return tokens, statuses
}

// parallel runs n calls of fn at once (call i gets instance "a" for even i, "b" for
// odd) and returns their answers.
func parallel(n int, fn func(instance string) answer) []answer {
	out := make([]answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			out[i] = fn("ab"[i%2 : i%2+1])
		})
	}
	close(start)
	wg.Wait()
	return out
}

// TestClusterExactlyOnceOnFileStorage: two instances sharing only a file_system storage
// hand out one token per resource token and per approved request, take one of two racing
// decisions, and a long poll on one instance sees a decision made on the other.
func TestClusterExactlyOnceOnFileStorage(t *testing.T) {
	e := startCluster(t)
	t.Run("resource token spent on both", func(t *testing.T) { e.raceSpends(t, 20) })
	t.Run("approved request polled on both", func(t *testing.T) { e.racePolls(t, 20) })
	t.Run("approve on a races deny on b", func(t *testing.T) { e.raceDecisions(t, 20) })
	t.Run("long poll on a sees approval on b", func(t *testing.T) { e.longPollAcross(t) })
}

// raceSpends: 20 parallel token requests with one resource token, split across a and b,
// give exactly one auth token (draft-hardt-aauth §16.2.3: the jti is single use).
func (e *clusterEnv) raceSpends(t *testing.T, trials int) {
	bad := 0
	for trial := range trials {
		rt := challengeFor(t, e.cred, e.apiID+"/read/x")
		n, st := countTokens(t, parallel(20, func(in string) answer { return e.tokenRequest(rt, in) }))
		if n != 1 {
			bad++
			t.Errorf("trial %d: %d auth tokens for one resource token, want 1 (statuses %v)", trial, n, st)
		}
	}
	t.Logf("one resource token spent 20 times across two instances: %d of %d trials gave other than one token", bad, trials)
}

// racePolls: 20 parallel polls of one approved request, split across a and b, give
// exactly one auth token; the others get 404 (the answer was taken).
func (e *clusterEnv) racePolls(t *testing.T, trials int) {
	bad := 0
	for trial := range trials {
		loc, code := e.pending(t, "")
		if err := e.userOn("a", nil).approve(code, "alice", alicePassword); err != nil {
			t.Fatal(err)
		}
		n, st := countTokens(t, parallel(20, func(in string) answer { return e.poll(loc, in, 0) }))
		if n != 1 || st[http.StatusNotFound] != 19 {
			bad++
			t.Errorf("trial %d: %d auth tokens from 20 polls of one approved request, want 1 and 19×404 (statuses %v)", trial, n, st)
		}
	}
	t.Logf("20 polls of one approved request across two instances: %d of %d trials gave other than one token", bad, trials)
}

// raceDecisions: approve posted to a and deny posted to b at once: exactly one decided
// page, the other "Already decided", and the poll answers what the decided page said.
func (e *clusterEnv) raceDecisions(t *testing.T, trials int) {
	bad := 0
	for trial := range trials {
		loc, code := e.pending(t, "")
		ua := e.userOn("a", nil)
		if _, err := ua.login(code, "alice", alicePassword); err != nil {
			t.Fatal(err)
		}
		ub := e.userOn("b", ua)
		csrf := ua.csrf() // read before the posts: each post rewrites ua's last page
		form := func(action string) url.Values {
			return url.Values{"csrf": {csrf}, "code": {code}, "action": {action}}
		}
		var pa, pb page
		var wg sync.WaitGroup
		wg.Go(func() { pa = ua.post(form("approve")) })
		wg.Go(func() { pb = ub.post(form("deny")) })
		wg.Wait()
		approved := pa.status == 200 && strings.Contains(pa.body, "Access approved")
		denied := pb.status == 200 && strings.Contains(pb.body, "Request denied")
		lost := func(p page) bool { return p.status == http.StatusGone && strings.Contains(p.body, "Already decided") }
		want := http.StatusForbidden
		if approved {
			want = http.StatusOK
		}
		got := e.poll(loc, "", 0)
		ok := approved != denied && (lost(pa) || lost(pb)) && got.status == want
		if !ok {
			bad++
			t.Errorf("trial %d: approve page %d (approved %v), deny page %d (denied %v), poll %d %.200s", trial, pa.status, approved, pb.status, denied, got.status, got.body)
		}
	}
	t.Logf("approve on a racing deny on b: %d of %d trials not exactly one decision matching the poll", bad, trials)
}

// longPollAcross: consent started on a, a long poll held on a, approval on b: the poll
// answers with the token within 1 s of the approval.
func (e *clusterEnv) longPollAcross(t *testing.T) {
	loc, code := e.pending(t, "a")
	ub := e.userOn("b", nil)
	if _, err := ub.login(code, "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	done := make(chan answer, 1)
	var answered atomic.Int64
	go func() {
		a := e.poll(loc, "a", 20)
		answered.Store(time.Now().UnixNano())
		done <- a
	}()
	time.Sleep(500 * time.Millisecond) // the poll is waiting on a
	if _, err := ub.decide(code, "approve"); err != nil {
		t.Fatal(err)
	}
	approvedAt := time.Now()
	select {
	case a := <-done:
		took := time.Duration(answered.Load() - approvedAt.UnixNano())
		if a.status != http.StatusOK {
			t.Fatalf("long poll: %d %v %.200s", a.status, a.err, a.body)
		}
		t.Logf("long poll on a answered %s after the approval on b", took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("long poll answered %s after the approval, want within 1 s", took)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("long poll on a did not answer within 15 s of the approval on b")
	}
}
