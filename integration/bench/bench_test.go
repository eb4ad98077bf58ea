package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// TestMain lets the test binary run as Caddy and as the upstream too, as the benchmark
// program does.
func TestMain(m *testing.M) {
	if os.Getenv(envRunCaddy) == "1" {
		caddycmd.Main()
		return
	}
	if ln := os.Getenv(envRunUpstream); ln != "" {
		os.Exit(runUpstream(ln))
	}
	os.Exit(m.Run())
}

// TestQuickRun runs every phase with tiny sizes: the benchmark must start Caddy, get
// every route to answer as expected (no errors) and report every row and verdict. It
// does not check the thresholds: the numbers of a run this short mean nothing.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that starts Caddy")
	}
	cfg, err := parseFlags([]string{"-quick", "-duration", "150ms", "-c", "4", "-agents", "3", "-tokens", "150", "-hostile", "1500"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var log bytes.Buffer
	rep, err := run(ctx, cfg, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	for _, name := range []string{rowIssuance, rowPlain, rowFloor, rowPlainTok, rowPlainJWKS, rowHWK, rowJWKS, rowToken, rowCold, rowRotation,
		rowDiscovery, rowStatic, rowGarbage, rowStaticSigned, rowExpired, rowHostile} {
		row := rep.Row(name)
		switch {
		case row == nil:
			t.Errorf("no row %s", name)
		case row.Requests == 0 || row.Errors > 0:
			t.Errorf("row %s: %d requests, %d errors (%s)", name, row.Requests, row.Errors, row.FirstError)
		}
	}
	if r := rep.Row(rowRotation); r != nil && r.Requests != 150 {
		t.Errorf("rotation sent %d requests, want one per token (150)", r.Requests)
	}
	if r := rep.Row(rowHostile); r != nil && r.Requests != 1500 {
		t.Errorf("hostile sent %d requests, want 1500", r.Requests)
	}
	for _, v := range rep.Verdicts() {
		if !v.Measured {
			t.Errorf("verdict %q not measured", v.Name)
		}
	}
	var out bytes.Buffer
	rep.print(&out)
	for _, want := range []string{"acceptance (issue 12)", "machine: ", "one Ed25519 verify", "token-rotation", "memory of the Caddy process"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())
}

// TestVerdicts checks the thresholds on made-up measurements, both ways.
func TestVerdicts(t *testing.T) {
	rep := func(hwkCPU, garbageCPU time.Duration, p99 time.Duration, issued int64, rssAfter int64) *Report {
		r := &Report{VerifyStart: 30 * time.Microsecond}
		r.add(&Row{Name: rowPlain, Requests: 1000, CPU: 1000 * 50 * time.Microsecond, Wall: time.Second})
		r.add(&Row{Name: rowHWK, Base: rowPlain, Requests: 1000, CPU: 1000 * hwkCPU, Wall: time.Second})
		r.add(&Row{Name: rowToken, Base: rowPlain, Requests: 1000, CPU: 1000 * hwkCPU, Wall: time.Second, P50: time.Millisecond, P99: p99})
		r.add(&Row{Name: rowStatic, Requests: 1000, CPU: 1000 * 10 * time.Microsecond, Wall: time.Second})
		r.add(&Row{Name: rowGarbage, Base: rowStatic, Requests: 1000, CPU: 1000 * garbageCPU, Wall: time.Second})
		r.add(&Row{Name: rowIssuance, Requests: issued, Wall: time.Second})
		r.Memory = Memory{Measured: true, IdleRSS: 100, AfterRSS: rssAfter, IdleHeap: 10, AfterHeap: 10}
		return r
	}
	results := func(r *Report) map[string]string {
		m := map[string]string{}
		for _, v := range r.Verdicts() {
			m[v.Name] = v.Result()
		}
		return m
	}
	good := results(rep(50*time.Microsecond+38*time.Microsecond, 14*time.Microsecond, 2*time.Millisecond, 1200, 190))
	bad := results(rep(50*time.Microsecond+40*time.Microsecond, 16*time.Microsecond, 4*time.Millisecond, 900, 210))
	for _, name := range []string{"hwk overhead <= 1.30 verifies", "token-cached overhead <= 1.40 verifies",
		"refused-garbage <= 5 µs (over a static 401, same bytes)", "token-cached p99 <= 3 x p50 (-c)",
		"issuance >= 1000 tokens/s", "RSS after hostile <= 2 x before"} {
		if good[name] != "PASS" {
			t.Errorf("%s: %s on passing numbers", name, good[name])
		}
		if bad[name] != "FAIL" && name != "token-cached overhead <= 1.40 verifies" {
			t.Errorf("%s: %s on failing numbers", name, bad[name])
		}
	}
	if good["jwks_uri overhead <= 1.35 verifies"] != "-" || good["refused-expired <= 5 µs (over a static 401, same bytes)"] != "-" {
		t.Errorf("a verdict without its row must read \"-\": %v", good)
	}
}

func TestFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-quick", "-phases", "hwk,plain"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.duration != time.Second || cfg.hostile != 50000 || strings.Join(cfg.phases, ",") != "plain,hwk" {
		t.Errorf("quick config %+v", cfg)
	}
	for _, good := range []string{"400", "off"} {
		if cfg, err := parseFlags([]string{"-caddy-gogc", good}); err != nil || cfg.caddyGOGCNote() != "GOGC="+good+" (-caddy-gogc)" {
			t.Errorf("-caddy-gogc %s: %v, %q", good, err, cfg.caddyGOGCNote())
		}
	}
	for _, bad := range [][]string{{"-phases", "hwk,nope"}, {"-c", "0"}, {"-duration", "0s"}, {"-tokens", "0"},
		{"-caddy-gogc", "0"}, {"-caddy-gogc", "-1"}, {"-caddy-gogc", "fast"}, {"-caddy-gogc", "Off"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestWriteReadme(t *testing.T) {
	path := t.TempDir() + "/README.md"
	doc := "# x\n\nbefore\n" + readmeBegin + "\nold run\n" + readmeEnd + "\nafter\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := &Report{VerifyStart: 30 * time.Microsecond}
	rep.add(&Row{Name: rowPlain, Requests: 10, Wall: time.Second})
	if err := writeReadme(path, rep); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	if strings.Contains(got, "old run") || !strings.Contains(got, "```text\naauth gateway benchmark") ||
		!strings.HasPrefix(got, "# x\n\nbefore\n"+readmeBegin) || !strings.HasSuffix(got, "```\n\n"+readmeEnd+"\nafter\n") {
		t.Fatalf("README after writing:\n%s", got)
	}
	if err := os.WriteFile(path, []byte("no markers\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeReadme(path, rep); err == nil {
		t.Fatal("a file without the markers was accepted")
	}
}

// TestOverheadSE: the standard error comes from the paired rounds of a row and its base
// (differences 4, 6, 5, 5 µs: sd 0.816, se 0.408), rounds with no requests are skipped,
// and rows driven apart or fewer than 3 pairs give none.
func TestOverheadSE(t *testing.T) {
	round := func(usPerReq float64) roundCost {
		return roundCost{cpu: time.Duration(usPerReq * 1000 * float64(time.Microsecond)), n: 1000}
	}
	r := &Report{}
	r.add(&Row{Name: rowStatic, rounds: []roundCost{round(10), round(12), {}, round(11), round(9)}})
	r.add(&Row{Name: rowGarbage, Base: rowStatic, rounds: []roundCost{round(14), round(18), round(50), round(16), round(14)}})
	se, pairs, ok := r.OverheadSE(r.Row(rowGarbage))
	if !ok || pairs != 4 || math.Abs(se-0.408) > 0.001 {
		t.Fatalf("se %.4f over %d pairs (ok %v), want 0.408 over 4", se, pairs, ok)
	}
	r.Row(rowGarbage).group = 2
	if _, _, ok := r.OverheadSE(r.Row(rowGarbage)); ok {
		t.Error("a standard error from rounds not driven together")
	}
	r.Row(rowGarbage).group = 0
	r.Row(rowGarbage).rounds = r.Row(rowGarbage).rounds[:2]
	if _, _, ok := r.OverheadSE(r.Row(rowGarbage)); ok {
		t.Error("a standard error from 2 pairs")
	}
}

func TestParseCPUList(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // cpuList of the result; "" for an error
	}{
		{"0", "0"}, {"0-1", "0,1"}, {"0,2-3,7", "0,2,3,7"}, {"4-4", "4"},
		{"", ""}, {"a", ""}, {"3-1", ""}, {"1,0", ""}, {"0-1,1", ""}, {"-1", ""}, {"0-", ""}, {"0,,1", ""},
	} {
		got, err := parseCPUList(c.in)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("%q accepted: %v", c.in, got)
		case c.want != "" && (err != nil || cpuList(got) != c.want):
			t.Errorf("%q: %v %v, want %s", c.in, got, err, c.want)
		}
	}
}

// TestPinnedLayout: a run re-executed pinned starts Caddy under taskset on Caddy's
// CPUs; one that is not starts it directly.
func TestPinnedLayout(t *testing.T) {
	t.Setenv(envPinned, "")
	if _, ok := pinned(); ok {
		t.Fatal("pinned without the variable")
	}
	if cmd := caddyCommand("/bin/caddy", "run"); strings.Join(cmd.Args, " ") != "/bin/caddy run" {
		t.Errorf("unpinned command %v", cmd.Args)
	}
	for _, bad := range []string{"0", "0|", "|1"} {
		t.Setenv(envPinned, bad)
		if _, ok := pinned(); ok {
			t.Errorf("%q read as a layout", bad)
		}
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Fatalf("taskset (util-linux) is needed to pin the benchmark's processes: %v", err)
	}
	t.Setenv(envPinned, "0,1|2,3")
	l, ok := pinned()
	if !ok || l.CaddyCPUs != "0,1" || l.LoadCPUs != "2,3" || l.cpus() != 4 {
		t.Fatalf("layout %+v %v", l, ok)
	}
	if cmd := caddyCommand("/bin/caddy", "run"); strings.Join(cmd.Args[1:], " ") != "-c 0,1 /bin/caddy run" {
		t.Errorf("pinned command %v", cmd.Args)
	}
	if s := l.String(); !strings.Contains(s, "Caddy on CPU 0,1") || !strings.Contains(s, "upstream on CPU 2,3") {
		t.Errorf("layout line %q", s)
	}
}

// TestCaddyGOGC: -caddy-gogc reaches the Caddy process's environment, over a GOGC of the
// benchmark's own, and only Caddy's.
func TestCaddyGOGC(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that starts Caddy")
	}
	t.Setenv("GOGC", "150")
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	admin := "127.0.0.1:" + ports[0]
	p, err := startCaddy(t.Context(), "", t.TempDir(), "{\n\tadmin "+admin+"\n}\n", admin, "400")
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.pid))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range strings.Split(string(env), "\x00") {
		if strings.HasPrefix(kv, "GOGC=") {
			got = append(got, kv)
		}
	}
	if len(got) != 1 || got[0] != "GOGC=400" {
		t.Fatalf("Caddy's environment has %q, want only GOGC=400", got)
	}
	if os.Getenv("GOGC") != "150" {
		t.Fatalf("the benchmark's own GOGC changed to %q", os.Getenv("GOGC"))
	}
}
