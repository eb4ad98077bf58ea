package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Phase names, in the order they run.
const (
	phPlain     = "plain"
	phHWK       = "hwk"
	phJWKS      = "jwks"
	phToken     = "token"
	phCold      = "cold"
	phRotation  = "rotation"
	phDiscovery = "discovery"
	phRefused   = "refused"
	phHostile   = "hostile"
	phIssuance  = "issuance"
)

var allPhases = []string{phPlain, phHWK, phJWKS, phToken, phCold, phRotation, phDiscovery, phRefused, phHostile, phIssuance}

// config is what the flags set.
type config struct {
	duration    time.Duration // driving time of each steady phase
	concurrency int           // connections (one request in flight on each)
	phases      []string
	quick       bool
	caddyBin    string // a caddy binary to measure instead of this one re-executed
	agents      int    // new jwks_uri agents of the discovery phase
	tokens      int    // distinct auth tokens of the rotation phase
	hostile     int    // hostile requests of distinct keys
	verifyRuns  int    // testing.Benchmark runs of ed25519.Verify
	keepDir     bool   // keep the temporary folder (Caddyfile, storage)
	readme      string // a Markdown file whose quoted run to replace with this one
	pin         bool   // Caddy on half the CPUs, the load generator and upstream on the rest
	caddyGOGC   string // GOGC for the Caddy process only ("" inherits this program's environment)
	layout      Layout // where the processes run (set by main)
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "driving time of each steady phase")
	fs.IntVar(&c.concurrency, "c", 32, "concurrent connections, one request in flight on each")
	phases := fs.String("phases", "all", "comma-separated phases to run: "+strings.Join(allPhases, ","))
	fs.BoolVar(&c.quick, "quick", false, "a run of under a minute: 1s phases, 20 agents, 5,000 tokens, 50,000 hostile requests")
	fs.StringVar(&c.caddyBin, "caddy", "", "measure this caddy binary (built with the aauth modules) instead of this program re-executed as Caddy")
	fs.IntVar(&c.agents, "agents", 200, "new jwks_uri agents in the discovery phase")
	fs.IntVar(&c.tokens, "tokens", 100000, "distinct auth tokens in the rotation phase")
	fs.IntVar(&c.hostile, "hostile", 1000000, "hostile requests of distinct random keys in the memory phase")
	fs.IntVar(&c.verifyRuns, "verify-runs", 3, "testing.Benchmark runs of ed25519.Verify (the fastest counts)")
	fs.BoolVar(&c.keepDir, "keep", false, "keep the temporary folder (Caddyfile, storage) and print its path")
	fs.BoolVar(&c.pin, "pin", true, "run Caddy on half the CPUs and this program and the upstream on the others (taskset), when there are 2 or more")
	fs.StringVar(&c.caddyGOGC, "caddy-gogc", "", "GOGC for the Caddy process alone (a percentage, or off); the default inherits the environment, where Go's default is 100")
	fs.StringVar(&c.readme, "readme", "", "also write the report into this Markdown file, between its bench output markers (README.md)")
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		c.quickDefaults(set)
	}
	var err error
	c.phases, err = parsePhases(*phases)
	if err != nil {
		return c, err
	}
	return c, c.validate()
}

// quickDefaults scales the run down to under a minute, except what was set explicitly.
func (c *config) quickDefaults(set map[string]bool) {
	def := func(name string, apply func()) {
		if !set[name] {
			apply()
		}
	}
	def("duration", func() { c.duration = time.Second })
	def("agents", func() { c.agents = 20 })
	def("tokens", func() { c.tokens = 5000 })
	def("hostile", func() { c.hostile = 50000 })
	def("verify-runs", func() { c.verifyRuns = 1 })
}

func parsePhases(s string) ([]string, error) {
	if s == "all" || s == "" {
		return slices.Clone(allPhases), nil
	}
	want := strings.Split(s, ",")
	for _, p := range want {
		if !slices.Contains(allPhases, strings.TrimSpace(p)) {
			return nil, fmt.Errorf("unknown phase %q (phases: %s)", p, strings.Join(allPhases, ","))
		}
	}
	var out []string
	for _, p := range allPhases {
		if slices.ContainsFunc(want, func(w string) bool { return strings.TrimSpace(w) == p }) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (c config) validate() error {
	switch {
	case c.duration <= 0:
		return fmt.Errorf("-duration must be positive")
	case c.concurrency < 1:
		return fmt.Errorf("-c must be at least 1")
	case c.agents < 1 || c.tokens < 1 || c.hostile < 1 || c.verifyRuns < 1:
		return fmt.Errorf("-agents, -tokens, -hostile and -verify-runs must be at least 1")
	case !validGOGC(c.caddyGOGC):
		return fmt.Errorf("-caddy-gogc must be a positive percentage or off, not %q", c.caddyGOGC)
	}
	return nil
}

// validGOGC reports whether v is empty or a GOGC value Go's runtime takes as meant (a
// positive percentage, or off): the runtime ignores a malformed GOGC without a word.
func validGOGC(v string) bool {
	if v == "" || v == "off" {
		return true
	}
	n, err := strconv.Atoi(v)
	return err == nil && n > 0
}

// caddyGOGCNote is how the report names the collector setting Caddy ran with.
func (c config) caddyGOGCNote() string {
	switch {
	case c.caddyGOGC != "":
		return "GOGC=" + c.caddyGOGC + " (-caddy-gogc)"
	case os.Getenv("GOGC") != "":
		return "GOGC=" + os.Getenv("GOGC") + " (from the environment)"
	}
	return "Go's default GOGC"
}

func (c config) has(phase string) bool { return slices.Contains(c.phases, phase) }
