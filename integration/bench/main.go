// Command bench measures what the aauth gateway costs per request (issue 12): it starts
// one Caddy process with a plain reverse_proxy route and hwk, jwks_uri and auth-token
// routes in front of the same backend, plus an aauth_server, drives each route with
// requests signed in advance (RFC 9421 HTTP Message Signatures with Signature-Key), and
// prints the Caddy process's CPU time per request, the overhead over the plain route in
// units of one Ed25519 verification measured in the same run, throughput, p50/p99
// latency, allocations per request, the cold and scale paths, and the acceptance
// verdicts of issue 12.
//
//	go run ./integration/bench            # about 5 minutes
//	go run ./integration/bench -quick     # under a minute
//
// See the Performance section of the repository README for what each row means.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-aauth/caddy-aauth/authserver"
	_ "github.com/caddy-aauth/caddy-aauth/caddyaauth"
)

// envRunCaddy makes this binary run as Caddy (the same modules as ./cmd/caddy), so the
// benchmark needs no second build: it starts itself with this variable set.
const envRunCaddy = "AAUTH_BENCH_RUN_CADDY"

func main() {
	if os.Getenv(envRunCaddy) == "1" {
		caddycmd.Main()
		return
	}
	if ln := os.Getenv(envRunUpstream); ln != "" {
		os.Exit(runUpstream(ln))
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	switch l, ok := pinned(); {
	case ok:
		cfg.layout = l
	case cfg.pin:
		cfg.layout = pinSelf() // returns only when it could not re-execute pinned
	default:
		cfg.layout = Layout{Why: "-pin=false"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The load generator collects garbage rarely (its heap is small): a GC pause of this
	// process would count in the latencies it measures of Caddy.
	debug.SetGCPercent(800)
	rep, err := run(ctx, cfg, os.Stderr)
	if rep != nil {
		rep.print(os.Stdout)
	}
	if err == nil && cfg.readme != "" {
		err = writeReadme(cfg.readme, rep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
