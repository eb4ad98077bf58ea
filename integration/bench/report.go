package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured.
type Report struct {
	cfg                    config
	Started                time.Time
	Machine                Machine
	VerifyStart, VerifyEnd time.Duration // one ed25519.Verify, before and after the phases
	Rows                   []*Row
	Memory                 Memory
}

// Memory is Caddy's memory around the hostile phase (after a forced GC each time).
type Memory struct {
	Measured                             bool
	StartRSS, IdleRSS, AfterRSS, PeakRSS int64
	IdleHeap, AfterHeap                  uint64 // HeapInuse
}

func newReport(cfg config) *Report {
	m := describeMachine()
	if n := cfg.layout.cpus(); n > 0 {
		m.Cores = n // this process sees only its own CPUs
	}
	return &Report{cfg: cfg, Started: time.Now().UTC(), Machine: m}
}

// layout is where the processes ran.
func (r *Report) layout() Layout {
	if r.cfg.layout == (Layout{}) {
		return Layout{Why: "not requested"}
	}
	return r.cfg.layout
}

func (r *Report) add(row *Row) { r.Rows = append(r.Rows, row) }

// Row returns the row called name, or nil.
func (r *Report) Row(name string) *Row {
	for _, row := range r.Rows {
		if row.Name == name {
			return row
		}
	}
	return nil
}

// Verify is the cost of one Ed25519 verify used as the unit: what it costs inside Caddy
// (the verify-floor row over plain, interleaved with the routes it is compared with),
// else, when that row was not measured, the tight-loop figure (TightVerify).
func (r *Report) Verify() time.Duration {
	if d := r.FloorVerify(); d > 0 {
		return d
	}
	return r.TightVerify()
}

// FloorVerify is one Ed25519 verify inside Caddy: the verify-floor row's CPU per request
// over the plain row's; 0 when not measured (or lost in the noise).
func (r *Report) FloorVerify() time.Duration {
	floor, plain := r.Row(rowFloor), r.Row(rowPlain)
	if floor == nil || plain == nil || floor.Requests == 0 || plain.Requests == 0 {
		return 0
	}
	return max(0, time.Duration((floor.CPUPerReq()-plain.CPUPerReq())*float64(time.Microsecond)))
}

// TightVerify is one ed25519.Verify in a tight loop of this process: the faster of the
// two measurements (the one less disturbed by other load).
func (r *Report) TightVerify() time.Duration {
	switch {
	case r.VerifyEnd == 0:
		return r.VerifyStart
	case r.VerifyStart == 0:
		return r.VerifyEnd
	}
	return min(r.VerifyStart, r.VerifyEnd)
}

// OverheadSE is the standard error of Overhead's µs, from the rounds: a row and its
// base driven together take turns, so their i-th rounds ran side by side; the spread of
// the per-round differences over the number of pairs. ok is false below 3 pairs, and for
// a row driven apart from its base (token-rotation, discovery, hostile: no pairs).
func (r *Report) OverheadSE(row *Row) (se float64, pairs int, ok bool) {
	base := r.Row(row.Base)
	if base == nil || row.group != base.group {
		return 0, 0, false
	}
	var d []float64
	for i := 0; i < len(row.rounds) && i < len(base.rounds); i++ {
		a, b := row.rounds[i], base.rounds[i]
		if a.n == 0 || b.n == 0 {
			continue
		}
		d = append(d, us(a.cpu)/float64(a.n)-us(b.cpu)/float64(b.n))
	}
	if len(d) < 3 {
		return 0, len(d), false
	}
	var mean, ss float64
	for _, x := range d {
		mean += x
	}
	mean /= float64(len(d))
	for _, x := range d {
		ss += (x - mean) * (x - mean)
	}
	return math.Sqrt(ss/float64(len(d)-1)) / math.Sqrt(float64(len(d))), len(d), true
}

// VerifiesSE is the standard error of Overhead's verifies: that of the µs and that of
// the unit, when the unit is the verify-floor row (the tight loop's is not counted).
func (r *Report) VerifiesSE(row *Row) (float64, bool) {
	o, ver, ok := r.Overhead(row)
	se, _, ok2 := r.OverheadSE(row)
	if !ok || !ok2 || o <= 0 {
		return 0, false
	}
	rel := (se / o) * (se / o)
	if floor := r.Row(rowFloor); floor != nil && r.FloorVerify() > 0 {
		if seU, _, ok := r.OverheadSE(floor); ok {
			u := us(r.FloorVerify())
			rel += (seU / u) * (seU / u)
		}
	}
	return ver * math.Sqrt(rel), true
}

// Overhead is row's Caddy CPU per request over its base row's, in µs and in verifies.
func (r *Report) Overhead(row *Row) (us, verifies float64, ok bool) {
	base := r.Row(row.Base)
	if base == nil || base.Requests == 0 || row.Requests == 0 {
		return 0, 0, false
	}
	us = row.CPUPerReq() - base.CPUPerReq()
	if v := r.Verify(); v > 0 {
		verifies = us / (float64(v) / float64(time.Microsecond))
	}
	return us, verifies, true
}

func (r *Report) print(w io.Writer) {
	fmt.Fprintf(w, "\naauth gateway benchmark, %s\n", r.Started.Format(time.RFC3339))
	m := r.Machine
	fmt.Fprintf(w, "machine: %s, %d cores, %s, Linux %s; load average %s at start, %s at end\n",
		m.CPU, m.Cores, m.Go, m.Kernel, m.LoadStart, m.LoadEnd)
	fmt.Fprintf(w, "layout: %s\n", r.layout())
	fmt.Fprintf(w, "run: -c %d, -duration %s per steady phase%s; Caddy: %s, %s\n",
		r.cfg.concurrency, r.cfg.duration, map[bool]string{true: " (-quick)"}[r.cfg.quick], r.caddyName(), r.cfg.caddyGOGCNote())
	fmt.Fprintf(w, "one Ed25519 verify: tight loop (testing.Benchmark, this process) %.1f µs at start, %.1f µs at end", us(r.VerifyStart), us(r.VerifyEnd))
	if f := r.FloorVerify(); f > 0 {
		fmt.Fprintf(w, "; inside Caddy (verify-floor over plain) %.1f µs", us(f))
	}
	fmt.Fprintf(w, "; unit = %.1f µs\n\n", us(r.Verify()))
	r.printTable(w)
	r.printMemory(w)
	fmt.Fprintln(w, "\nacceptance (issue 12):")
	fmt.Fprintln(w, "  (± is one standard error, from the per-round differences of a row and its base)")
	for _, v := range r.Verdicts() {
		fmt.Fprintf(w, "  %-4s  %-44s %s\n", v.Result(), v.Name, v.Got)
	}
	r.printErrors(w)
}

func (r *Report) caddyName() string {
	if r.cfg.caddyBin != "" {
		return r.cfg.caddyBin
	}
	return "this program re-executed as Caddy (the modules of ./cmd/caddy)"
}

func (r *Report) printTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "row\trequests\terrors\treq/s\tvs base\tCPU µs/req\t+µs vs base\t± se\tverifies\tp50 ms\tp99 ms\tallocs/req\tKB/req\t")
	for _, row := range r.Rows {
		ratio, over, se, ver := "-", "-", "-", "-"
		// Throughput against a plain base only: the refusal rows' base answers at once.
		if base := r.Row(row.Base); base != nil && strings.HasPrefix(base.Name, rowPlain) && row.Conc == base.Conc && base.RPS() > 0 {
			ratio = fmt.Sprintf("%.2f", row.RPS()/base.RPS())
		}
		if o, v, ok := r.Overhead(row); ok {
			over, ver = fmt.Sprintf("%.1f", o), fmt.Sprintf("%.2f", v)
		}
		if e, _, ok := r.OverheadSE(row); ok {
			se = fmt.Sprintf("%.1f", e)
		}
		n := float64(max(row.Requests, 1))
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%.1f\t%s\t%s\t%s\t%.2f\t%.2f\t%.1f\t%.2f\t\n",
			row.Name, row.Requests, row.Errors, row.RPS(), ratio, row.CPUPerReq(), over, se, ver,
			ms(row.P50), ms(row.P99), float64(row.Mallocs)/n, float64(row.Bytes)/n/1024)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, row := range r.Rows {
		base := ""
		if row.Base != "" {
			base = " (base: " + row.Base + ")"
		}
		fmt.Fprintf(w, "  %-19s %s%s%s\n", row.Name, row.What, base, codes(row.Codes))
	}
}

func (r *Report) printMemory(w io.Writer) {
	m := r.Memory
	if !m.Measured {
		return
	}
	fmt.Fprintf(w, "\nmemory of the Caddy process (after a GC): RSS %.1f MiB after start, %.1f MiB before the hostile phase, %.1f MiB after it (peak %.1f MiB); Go heap in use %.1f MiB before, %.1f MiB after\n",
		mib(m.StartRSS), mib(m.IdleRSS), mib(m.AfterRSS), mib(m.PeakRSS), mib(int64(m.IdleHeap)), mib(int64(m.AfterHeap)))
}

func (r *Report) printErrors(w io.Writer) {
	for _, row := range r.Rows {
		if row.Errors > 0 {
			fmt.Fprintf(w, "\nERRORS in %s: %d of %d requests; first: %s\n", row.Name, row.Errors, row.Requests, row.FirstError)
		}
	}
}

// codes lists the refusals of a row, most frequent first: "; 401 invalid_key 51%, …".
func codes(m map[string]int64) string {
	var total int64
	keys := make([]string, 0, len(m))
	for k, v := range m {
		keys = append(keys, k)
		total += v
	}
	if total == 0 {
		return ""
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %.0f%%", k, 100*float64(m[k])/float64(total))
	}
	return "; answers: " + strings.Join(parts, ", ")
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) float64        { return float64(b) / (1 << 20) }
