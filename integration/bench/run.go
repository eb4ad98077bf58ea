package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// bench is one run: the Caddy process, the servers of the benchmark process, and the
// report being filled.
type bench struct {
	groups int // runPhases calls so far (Row.group)
	cfg    config
	log    io.Writer
	dir    string
	caddy  *caddyProc
	scrape memStats // allocations one /debug/vars scrape costs Caddy
	rep    *Report

	up        *upstreamProc
	issuer    *localIssuer
	agents    []*localAgent // jwks_uri agents whose keys Caddy has cached
	newAgents []*localAgent // agents Caddy has never seen (discovery phase)
	closers   []func()

	// host:port of each gateway site (one measured kind of route each, shaped like the
	// plain site, so that no row pays for matching another row's routes), of the plain
	// server and of the auth server
	gw, jwksSite, tokSite, coldSite string
	floorSite                       string // plain + one Ed25519 verify in Caddy (verifyFloor)
	staticSite                      string // a static 401, whatever the request
	upAddr                          string // the upstream's
	plain, as                       string
	admin                           string // host:port of Caddy's admin endpoint
	resID, asID                     string
	seq                             atomic.Int64        // makes every request path distinct
	issued                          []*agent.Credential // auth tokens from the aauth_server
}

const (
	benchScope  = "data.read"
	cachedAgent = 8 // jwks_uri agents of the cached-key phase
)

func run(ctx context.Context, cfg config, log io.Writer) (*Report, error) {
	b := &bench{cfg: cfg, log: log, rep: newReport(cfg)}
	defer b.cleanup()
	b.logf("measuring one Ed25519 verify (%d run(s) of testing.Benchmark)", cfg.verifyRuns)
	b.rep.VerifyStart = verifyCost(cfg.verifyRuns)
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	err := b.phases(ctx)
	b.rep.VerifyEnd = verifyCost(cfg.verifyRuns)
	b.rep.Machine.LoadEnd = loadavg()
	return b.rep, err
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", a...)
}

func (b *bench) cleanup() {
	if b.caddy != nil {
		b.caddy.stop()
	}
	for _, c := range b.closers {
		c()
	}
	if b.dir == "" {
		return
	}
	if b.cfg.keepDir {
		b.logf("kept %s", b.dir)
		return
	}
	_ = os.RemoveAll(b.dir)
}

// setup starts the local servers and Caddy.
func (b *bench) setup(ctx context.Context) error {
	var err error
	if b.dir, err = os.MkdirTemp("", "aauth-bench-"); err != nil {
		return err
	}
	// One batch: ports asked for one at a time could come back twice (each is released
	// before the next is asked for), and a listener would then fail to bind.
	ports, err := freePorts(10)
	if err != nil {
		return err
	}
	b.upAddr = "127.0.0.1:" + ports[9]
	for i, p := range []*string{&b.gw, &b.plain, &b.as, &b.admin, &b.jwksSite, &b.tokSite, &b.coldSite, &b.floorSite, &b.staticSite} {
		*p = "127.0.0.1:" + ports[i]
	}
	b.resID, b.asID = "http://"+b.tokSite, "http://"+b.as
	if err := b.startLocal(); err != nil {
		return err
	}
	b.logf("starting Caddy (folder %s)", b.dir)
	b.caddy, err = startCaddy(ctx, b.cfg.caddyBin, b.dir, b.caddyfile(), b.admin, b.cfg.caddyGOGC)
	if err != nil {
		return err
	}
	if err := waitOK(ctx, b.asID+"/.well-known/aauth-issuer.json"); err != nil {
		return err
	}
	m0, err := b.caddy.memStats()
	if err != nil {
		return fmt.Errorf("reading Caddy's runtime stats: %w", err)
	}
	m1, err := b.caddy.memStats()
	b.scrape = memStats{Mallocs: sub(m1.Mallocs, m0.Mallocs), TotalAlloc: sub(m1.TotalAlloc, m0.TotalAlloc)}
	b.rep.Memory.StartRSS, _, _ = b.caddy.rss()
	return err
}

func (b *bench) startLocal() error {
	var err error
	if b.up, err = startUpstream(b.upAddr); err != nil {
		return err
	}
	b.closers = append(b.closers, b.up.close)
	if b.issuer, err = startIssuer(); err != nil {
		return err
	}
	b.closers = append(b.closers, b.issuer.close)
	b.agents, err = startAgents(cachedAgent, "Bench agent")
	b.closeAgents(b.agents)
	if err != nil || !b.cfg.has(phDiscovery) {
		return err
	}
	b.newAgents, err = startAgents(b.cfg.agents, "New agent")
	b.closeAgents(b.newAgents)
	return err
}

func (b *bench) closeAgents(as []*localAgent) {
	for _, a := range as {
		b.closers = append(b.closers, a.close)
	}
}

// caddyfile is the configuration under test: a plain server (no aauth at all: the
// baseline), a site answering a static 401 (the base of the refusals), one gateway site
// per kind of route (hwk; jwks_uri; the cached-token route;
// the cold and rotating token routes, which share the token route's resource), and the
// auth server. Each gateway site holds one route to measure, then reverse_proxy.
func (b *bench) caddyfile() string {
	tokenOpts := fmt.Sprintf(`require auth-token
		resource %s
		auth_server %s
		trust_issuer %s
		scope %s`, b.resID, b.asID, b.issuer.id, benchScope)
	site := func(addr, matcher, opts string) string {
		return fmt.Sprintf(`
http://:%s {
	bind 127.0.0.1
	aauth %s{
		%s
	}
	reverse_proxy %s
}
`, port(addr), matcher, opts, b.up.addr)
	}
	floor := "" // only this program, re-executed as Caddy, has the verifyFloor module
	if b.cfg.caddyBin == "" {
		floor = fmt.Sprintf(`
http://:%s {
	bind 127.0.0.1
	%s /hwk/*
	reverse_proxy %s
}
`, port(b.floorSite), verifyFloorDirective, b.up.addr)
	}
	return fmt.Sprintf(`{
	admin %s
	storage file_system %s/storage
	auto_https off
	grace_period 1s
	aauth {
		dev
	}
}

http://:%s {
	bind 127.0.0.1
	reverse_proxy %s
}

http://:%s {
	bind 127.0.0.1
	header Cache-Control no-store
	header WWW-Authenticate AAuth
	header AAuth require=pseudonym
	respond `+"`"+`{"error":"invalid_signature","error_description":"a static answer"}`+"`"+` 401
}
%s%s%s%s%s
http://%s {
	bind 127.0.0.1
	aauth_server {
		issuer %s
		token_rate_limit off
		policy {
			default allow
		}
	}
}
`, b.admin, b.dir, port(b.plain), b.up.addr, port(b.staticSite),
		site(b.gw, "/hwk/* ", "require pseudonym"), site(b.jwksSite, "/jwks/* ", "require identity"),
		site(b.tokSite, "/token/* ", tokenOpts), site(b.coldSite, "", tokenOpts), floor, b.as, b.asID)
}

func port(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// freePorts returns n distinct loopback ports nothing listens on right now, chosen
// below the kernel's ephemeral range: a port from that range, released for Caddy to
// bind, could meanwhile become the local port of one of this process's own connections
// (the admin endpoint is polled while Caddy starts) or of a listener on port 0.
func freePorts(n int) ([]string, error) {
	low, high := belowEphemeral()
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("no %d free loopback ports in %d-%d", n, low, high)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", low+rand.IntN(high-low)))
		if err != nil {
			continue // in use: draw another
		}
		lns = append(lns, ln)
		out = append(out, port(ln.Addr().String()))
	}
	return out, nil
}

// belowEphemeral is a port range under the kernel's ephemeral ports
// (/proc/sys/net/ipv4/ip_local_port_range; 32768 when unreadable).
func belowEphemeral() (low, high int) {
	high = 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 11000 {
				high = v
			}
		}
	}
	return 10000, high
}

// waitOK waits until url answers 200.
func waitOK(ctx context.Context, url string) error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer 200 within 30s", url)
}
