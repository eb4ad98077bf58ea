package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// Interaction chaining in a cluster (draft-hardt-aauth §4.5.8.2): API1's gateway runs on
// two Caddy processes on one file_system storage with replay_store shared, behind the
// test's load balancer (API1's identifier is the balancer's origin). AS1, API2 and AS2
// run in the test process. A chained request started on one instance is redirected,
// polled and replayed on the other; each instance's backend calls API2 through its own
// instance's egress.

type chainCluster struct {
	chainEnv
	lb       *clusterEnv // the balancer (lbURL, direct)
	backends [2]*chainBackend
	egress   [2]string
}

func startChainCluster(t *testing.T) *chainCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test that builds and runs two caddy processes")
	}
	c := &chainCluster{lb: &clusterEnv{dir: t.TempDir()}}
	env := &c.chainEnv
	env.consentEnv = consentEnv{agentSrv: newAgentServer(t), users: map[string]string{"alice": alicePassword}}
	env.path = "/data"
	env.hashes = bcryptHashes(t, env.users)
	c.lb.startBalancer(t)
	env.apiID = c.lb.lbURL
	env.authID = "http://127.0.0.1:" + freePort(t)
	env.api2ID = "http://localhost:" + freePort(t)
	env.as2ID = "http://127.0.0.1:" + freePort(t)
	env.echo2 = newEchoBackend(t)
	caddytest.NewTester(t).InitServer(globalOptions(t, true)+chainPeers(env, "consent scope data.read"), "caddyfile")
	bin := filepath.Join(c.lb.dir, "caddy")
	goBuild(t, moduleRoot(t), bin, "./cmd/caddy")
	for i := range 2 {
		c.egress[i] = "http://127.0.0.1:" + freePort(t)
		eg := c.egress[i]
		c.backends[i] = newChainBackend(t, func() string { return eg }, func() string { return env.api2ID + "/data" }, false)
		port := freePort(t)
		c.lb.direct[i] = "http://127.0.0.1:" + port
		c.startAPI1(t, bin, i, port)
	}
	return c
}

// startAPI1 runs instance i of API1's gateway (the same config on each, but for the
// ports and its own backend and egress) on the shared storage.
func (c *chainCluster) startAPI1(t *testing.T, bin string, i int, port string) {
	home := filepath.Join(c.lb.dir, fmt.Sprintf("home%d", i))
	for _, d := range []string{"data", "config"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`{
	admin off
	storage file_system %s/storage
	aauth {
		dev
		replay_store shared
	}
}

http://:%s {
	aauth {
		require auth-token
		resource %s
		auth_server %s
		scope data.write
		txn
		egress
	}
	reverse_proxy %s
}

http://:%s {
	bind 127.0.0.1
	aauth_egress
}
`, c.lb.dir, port, c.apiID, c.authID, strings.TrimPrefix(c.backends[i].URL, "http://"), strings.TrimPrefix(c.egress[i], "http://127.0.0.1:"))
	file := filepath.Join(c.lb.dir, fmt.Sprintf("Caddyfile%d", i))
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"XDG_DATA_HOME=" + filepath.Join(home, "data"), "XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "HOME=" + home}
	p := startProcess(t, "api1-"+"ab"[i:i+1], c.lb.dir, env, bin, "run", "--config", file, "--adapter", "caddyfile")
	waitCaddy(t, p, c.lb.direct[i]+"/.well-known/aauth-resource.json")
}

// start runs the agent's call to API1 on instance (after alice approved the agent's own
// token at AS1) and returns API1's 202 for the downstream consent.
func (c *chainCluster) start(t *testing.T, instance string) pendingBody {
	t.Helper()
	onPending, pending := pendingSink()
	a := newConsentAgent(c.identity(), "chaining test", onPending)
	tr := a.client.Transport.(*agent.Transport)
	tr.Base = pinned{base: tr.Base, instance: instance}
	ch := a.start(c.apiID + c.path)
	p := waitPending(t, pending, 15*time.Second)
	if err := newWebUser(c.authID).approve(p.Code, "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	out := waitOutcome(t, ch, 60*time.Second)
	var pb pendingBody
	if out.err != nil || out.res.status != http.StatusAccepted || json.Unmarshal(out.res.body, &pb) != nil ||
		!strings.HasPrefix(pb.Location, c.apiID+"/.well-known/aauth-resource/pending/") || pb.Code == "" {
		t.Fatalf("want 202 from API1 (downstream consent), got %d %v %s", out.res.status, out.err, out.res.body)
	}
	return pb
}

// poller is the agent (same key) polling our pending URL on instance.
func (c *chainCluster) poller(instance string) *consentAgent {
	a := newConsentAgent(c.identity(), "chaining test", nil)
	tr := a.client.Transport.(*agent.Transport)
	tr.Base = pinned{base: tr.Base, instance: instance}
	return a
}

// backendCounts is how many requests each instance's backend has served.
func (c *chainCluster) backendCounts() [2]int {
	return [2]int{len(c.backends[0].requests()), len(c.backends[1].requests())}
}

// userOn is a person whose requests go to instance ("a", "b").
func (c *chainCluster) userOn(instance string) *webUser {
	u := newWebUser(c.as2ID)
	u.c.Transport = pinned{base: u.c.Transport, instance: instance}
	return u
}

// consentVia has the person follow our interaction URL on instance to AS2's consent
// page and approve there.
func (c *chainCluster) consentVia(t *testing.T, instance string, pb pendingBody) {
	t.Helper()
	u := c.userOn(instance)
	p := u.read(u.c.Get(pb.InteractionEndpoint + "?code=" + url.QueryEscape(pb.Code)))
	if p.err != nil || !strings.HasPrefix(p.url, c.as2ID+"/interact?code=") {
		t.Fatalf("interaction redirect on %s ended at %q (%v)", instance, p.url, p.err)
	}
	if err := u.approve(strings.TrimPrefix(p.url, c.as2ID+"/interact?code="), "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
}

// TestChainingCluster: a chained request started on one instance completes on the other:
// the person's redirect, the agent's polls and the replay (through that instance's own
// route, backend and egress) happen there, API2 is called exactly once, and the pending
// URL is 404 on both instances after the one terminal answer.
func TestChainingCluster(t *testing.T) {
	c := startChainCluster(t)
	polls := map[string]*consentAgent{"a": c.poller("a"), "b": c.poller("b")}
	t.Run("started on a, interact and polls on b", func(t *testing.T) {
		before, hits := c.backendCounts(), c.echo2.hits.Load()
		pb := c.start(t, "a")
		if got := polls["b"].get(pb.Location); got.res.status != http.StatusAccepted {
			t.Fatalf("poll on b before the consent: %d %s", got.res.status, got.res.body)
		}
		c.rejects(t, "b", pb)
		c.consentVia(t, "b", pb)
		var final agentOutcome
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			if final = polls["b"].get(pb.Location); final.err != nil || final.res.status != http.StatusAccepted {
				break
			}
		}
		c.backend1 = c.backends[1]
		c.checkChained(t, final)
		after := c.backendCounts()
		if after[0]-before[0] != 1 || after[1]-before[1] != 1 || c.echo2.hits.Load()-hits != 1 {
			t.Errorf("backend a served %d, backend b %d, API2 %d requests; want 1 (the first run), 1 (the replay), 1",
				after[0]-before[0], after[1]-before[1], c.echo2.hits.Load()-hits)
		}
		c.gone(t, polls, pb)
	})
	t.Run("started on b, polls alternate, racing polls after approval", func(t *testing.T) {
		before, hits := c.backendCounts(), c.echo2.hits.Load()
		pb := c.start(t, "b")
		for _, in := range []string{"a", "b", "a"} {
			if got := polls[in].get(pb.Location); got.res.status != http.StatusAccepted {
				t.Fatalf("poll on %s before the consent: %d %s", in, got.res.status, got.res.body)
			}
		}
		c.consentVia(t, "a", pb)
		outs := make([]agentOutcome, 6)
		var wg sync.WaitGroup
		for i := range outs {
			wg.Go(func() { outs[i] = polls["ab"[i%2:i%2+1]].get(pb.Location) })
		}
		wg.Wait()
		ok, statuses := 0, map[int]int{}
		for _, o := range outs {
			statuses[o.res.status]++
			if o.res.status == http.StatusOK {
				ok++
				after := c.backendCounts()
				c.backend1 = c.backends[0]
				if after[1]-before[1] == 2 {
					c.backend1 = c.backends[1] // replayed on b, where it started
				}
				c.checkChained(t, o)
			}
		}
		if ok != 1 || statuses[http.StatusAccepted]+statuses[http.StatusNotFound] != 5 {
			t.Errorf("6 racing polls after the approval: statuses %v, want one 200 and the others 202 or 404", statuses)
		}
		after := c.backendCounts()
		if after[0]+after[1]-before[0]-before[1] != 2 || c.echo2.hits.Load()-hits != 1 {
			t.Errorf("backends served %d requests, API2 %d; want 2 (the first run and the replay) and 1",
				after[0]+after[1]-before[0]-before[1], c.echo2.hits.Load()-hits)
		}
		c.gone(t, polls, pb)
		c.wrongCodes(t, "b")
	})
}

// rejects: on instance, a poll signed by another key is refused (403), an unknown id is
// 404, and neither ends the pending request.
func (c *chainCluster) rejects(t *testing.T, instance string, pb pendingBody) {
	t.Helper()
	cred, _ := hwkCredential(t)
	other := &clusterEnv{cred: cred} // signs with the other key
	req, _ := http.NewRequest("GET", pb.Location, nil)
	if got := other.send(req, instance); got.status != http.StatusForbidden || !strings.Contains(got.body, "another key") {
		t.Errorf("poll signed by another key on %s: %d %v %s", instance, got.status, got.err, got.body)
	}
	unknown := c.apiID + "/.well-known/aauth-resource/pending/AAAAAAAAAAAAAAAAAAAAAA"
	if got := c.poller(instance).get(unknown); got.res.status != http.StatusNotFound {
		t.Errorf("unknown id on %s: %d %s", instance, got.res.status, got.res.body)
	}
}

// gone: after the terminal answer the pending URL is 404 on both instances, and our
// code leads nowhere.
func (c *chainCluster) gone(t *testing.T, polls map[string]*consentAgent, pb pendingBody) {
	t.Helper()
	for _, in := range []string{"a", "b"} {
		if got := polls[in].get(pb.Location); got.res.status != http.StatusNotFound {
			t.Errorf("poll on %s after the terminal answer: %d %s", in, got.res.status, got.res.body)
		}
		resp, err := plainClient().Transport.RoundTrip(c.interactRequest(in, pb.Code))
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("interact on %s after the terminal answer: %v %v", in, resp.StatusCode, err)
		}
		if err == nil {
			resp.Body.Close()
		}
	}
}

// wrongCodes: unknown codes on instance are limited (429 with Retry-After once
// chainWrongCodes were sent from this client).
func (c *chainCluster) wrongCodes(t *testing.T, instance string) {
	t.Helper()
	status := 0
	for range 11 {
		resp, err := plainClient().Transport.RoundTrip(c.interactRequest(instance, "ZZZZ-ZZZZ"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		status = resp.StatusCode
		if status == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if status != http.StatusTooManyRequests {
		t.Errorf("11th unknown code on %s: %d, want 429", instance, status)
	}
}

func (c *chainCluster) interactRequest(instance, code string) *http.Request {
	req, _ := http.NewRequest("GET", c.apiID+"/.well-known/aauth-resource/interact?code="+url.QueryEscape(code), nil)
	req.Header.Set(instanceHeader, instance)
	return req
}
