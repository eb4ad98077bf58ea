package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// Agents ride out a crash of the auth server (draft-hardt-aauth §10.3–10.6: the agent
// polls the pending URL until the user decides). Ten library agents (Transport with a
// Poller) and one `aauth fetch` wait for consent; Caddy, which runs both the gateway and
// the auth server on file storage, is killed with SIGKILL mid-wait and started again 3 s
// later on the same storage and ports; the user then approves all eleven on the consent
// page, and every agent gets its answer from the backend.
func TestAgentsRideOutAuthServerKill(t *testing.T) {
	const libAgents = 10
	start := time.Now()
	backend := newEchoBackend(t)
	agentSrv := newAgentServer(t)
	hashes := bcryptHashes(t, map[string]string{"alice": alicePassword})
	e := newRestartEnv(t, func(e *restartEnv) string {
		return fmt.Sprintf(`%s {
	%s
	reverse_proxy %s
}

%s`, e.apiID, apiBlock(e.apiID, e.authID), backend.addr(), authServerBlock(e.authID, "", hashes))
	})
	aauthBin := filepath.Join(e.dir, "aauth")
	goBuild(t, moduleRoot(t), aauthBin, "./cmd/aauth")
	e.start(t)

	// The CLI's agent: its own key, published by `aauth serve`.
	work := t.TempDir()
	runCLI(t, aauthBin, work, nil, "keygen", "-o", "cli.jwk").wantExit(t, 0)
	cliID := "http://127.0.0.1:" + freePort(t)
	serveProc := startProcess(t, "aauth serve", work, []string{"AAUTH_DELEGATE_SECRET=restart-agent-secret"},
		aauthBin, "serve", "-key", "cli.jwk", "-id", cliID)
	waitHTTP(t, serveProc, cliID+"/.well-known/aauth-agent.json", 15*time.Second)

	type pendingFrom struct {
		agent int
		pe    *agent.PendingError
	}
	pendings := make(chan pendingFrom, libAgents)
	outs := make([]<-chan agentOutcome, libAgents)
	for i := range libAgents {
		cred, _ := agentSrv.delegate(t, fmt.Sprintf("delegate-%02d", i))
		a := newConsentAgent(cred, fmt.Sprintf("job %02d", i), func(pe *agent.PendingError) {
			pendings <- pendingFrom{i, pe}
		})
		outs[i] = a.start(fmt.Sprintf("%s/data/%02d", e.apiID, i))
	}
	cli := startCLIWatching(t, regexp.MustCompile(regexp.QuoteMeta(e.authID)+`/interact\?code=[0-9A-Z]+`), aauthBin, work,
		"fetch", "-dev", "-no-qr", "-v", "-key", "cli.jwk", "-id", cliID, "-wait", "10", "-consent-timeout", "60s",
		e.apiID+"/data/cli")

	codes := make([]string, libAgents+1)
	for range libAgents {
		select {
		case got := <-pendings:
			codes[got.agent] = got.pe.Code
		case <-time.After(15 * time.Second):
			t.Fatalf("not every library agent was asked for consent within 15 s: %q", codes)
		}
	}
	link := cli.interactionURL(t, 15*time.Second)
	lu, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	codes[libAgents] = lu.Query().Get("code")
	time.Sleep(500 * time.Millisecond) // every agent is now in a (long) poll

	// kill -9: no shutdown, connections are cut mid-poll; the pending requests are on disk.
	if err := e.proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-e.proc.done
	killed := time.Now()
	time.Sleep(3 * time.Second)
	e.start(t)
	t.Logf("auth server down for %s", time.Since(killed).Round(time.Millisecond))
	for i, o := range outs {
		select {
		case r := <-o:
			t.Fatalf("library agent %d ended during the outage: status %d err %v", i, r.res.status, r.err)
		default:
		}
	}
	select {
	case <-cli.done:
		t.Fatalf("the CLI ended during the outage\n%s", cli)
	default:
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(codes))
	for i, code := range codes {
		wg.Go(func() {
			if err := newWebUser(e.authID).approve(code, "alice", alicePassword); err != nil {
				errs <- fmt.Errorf("approving agent %d (code %s): %w", i, code, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	ok := 0
	for i := range libAgents {
		o := waitOutcome(t, outs[i], 30*time.Second)
		if o.err != nil || o.res.status != 200 {
			t.Errorf("library agent %d: status %d err %v body %s", i, o.res.status, o.err, o.res.body)
			continue
		}
		if o.res.echo.Path != fmt.Sprintf("/data/%02d", i) || o.res.backendHeader("X-Aauth-Subject") != "alice" ||
			o.res.backendHeader("X-Aauth-Scope") != "data.write" {
			t.Errorf("library agent %d: backend saw %s %v", i, o.res.echo.Path, o.res.echo.Header)
			continue
		}
		ok++
	}
	out := cli.wait(t, 30*time.Second)
	var echo echoed
	switch {
	case out.exit != 0:
		t.Errorf("the CLI exited %d\n%s", out.exit, out)
	case json.Unmarshal([]byte(out.stdout), &echo) != nil || echo.Path != "/data/cli":
		t.Errorf("the CLI did not print the backend's answer\n%s", out)
	case !strings.Contains(out.stderr, "cannot be reached"):
		t.Errorf("the CLI's -v log does not show the outage\n%s", out)
	default:
		ok++
	}
	if got := backend.hits.Load(); got != int64(ok) {
		t.Errorf("backend hits %d, want %d", got, ok)
	}
	t.Logf("%d of %d agents completed with 200 across a kill -9 and restart, in %s", ok, libAgents+1, time.Since(start).Round(time.Millisecond))
	if ok != libAgents+1 {
		t.Errorf("%d of %d agents completed", ok, libAgents+1)
	}
}
