package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Row is one measured line of the report.
type Row struct {
	Name string // short name, the table's first column
	What string // what the requests are
	Base string // the row whose cost this one is compared with ("" for none)

	Conc             int // connections it was driven with
	Requests, Errors int64
	FirstError       string
	Wall             time.Duration // driving time (signing in advance excluded)
	CPU              time.Duration // Caddy's CPU time while driving
	Mallocs, Bytes   uint64        // Caddy's heap allocations while driving
	P50, P99         time.Duration
	Codes            map[string]int64 // refusals by status and error code

	lat    []int64
	rounds []roundCost // each round's cost, in the order driven (OverheadSE)
	group  int         // rows driven in the same runPhases call share it: their rounds took turns
}

// roundCost is what one round cost Caddy.
type roundCost struct {
	cpu time.Duration
	n   int64
}

// CPUPerReq is Caddy's CPU time per request, in µs.
func (r *Row) CPUPerReq() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.CPU) / float64(time.Microsecond) / float64(r.Requests)
}

// RPS is requests per second of driving time.
func (r *Row) RPS() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Wall.Seconds()
}

func (r *Row) add(s *sample, cpu time.Duration) {
	r.rounds = append(r.rounds, roundCost{cpu, s.n})
	r.Requests += s.n
	r.Errors += s.errs
	if r.FirstError == "" {
		r.FirstError = s.firstErr
	}
	r.Wall += s.wall
	r.CPU += cpu
	r.lat = append(r.lat, s.lat...)
	for k, v := range s.codes {
		if r.Codes == nil {
			r.Codes = map[string]int64{}
		}
		r.Codes[k] += v
	}
}

func (r *Row) finish() {
	slices.Sort(r.lat)
	pct := func(p float64) time.Duration {
		if len(r.lat) == 0 {
			return 0
		}
		return time.Duration(r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))])
	}
	r.P50, r.P99 = pct(0.50), pct(0.99)
	r.lat = nil
}

// phase is one measured load.
type phase struct {
	row   *Row
	addr  string
	want  int // the status every answer must have
	conc  int
	total int // requests to send; 0: send for the configured duration
	warm  int // unmeasured requests first (connections, caches)
	// batch signs n requests just before they are sent (signatures must be fresh: the
	// gateway refuses a created time outside its window); or gen builds each request
	// on the fly for requests that need no signing.
	batch func(n int) ([][]byte, error)
	gen   source
	check func(answer) error
}

// roundTime is how long one round of requests signed in advance lasts: well inside the
// gateway's 60 s signature window.
const roundTime = 2 * time.Second

// runPhase drives one phase and fills its row.
func (b *bench) runPhase(ctx context.Context, ph phase) error { return b.runPhases(ctx, ph) }

// runPhases drives the phases in turn, a round of each (a round of requests signed in
// advance lasts about roundTime), until each has sent its requests or run for the
// configured duration, so that changes in the machine's load fall on all of them alike.
// Caddy's CPU time and allocations are read around each round only: Caddy is idle while
// the next round is signed.
func (b *bench) runPhases(ctx context.Context, phs ...phase) error {
	b.groups++
	ds := make([]*driver, len(phs))
	for i, ph := range phs {
		ph.row.group = b.groups
		ds[i] = newDriver(ph.addr, ph.conc)
		defer ds[i].close()
		if err := b.warm(ctx, ph, ds[i]); err != nil {
			return err
		}
	}
	for busy := true; busy && ctx.Err() == nil; {
		busy = false
		for i, ph := range phs {
			if n := ph.roundSize(ph.row, b.cfg.duration); n > 0 {
				busy = true
				if err := b.round(ctx, ph, ds[i], n); err != nil {
					return err
				}
			}
		}
	}
	for _, ph := range phs {
		ph.row.finish()
		b.logf("%-22s %8d requests, %d errors, %.1f µs CPU/request", ph.row.Name, ph.row.Requests, ph.row.Errors, ph.row.CPUPerReq())
	}
	return ctx.Err()
}

// warm sends ph.warm unmeasured requests (connections, caches).
func (b *bench) warm(ctx context.Context, ph phase, d *driver) error {
	ph.row.Conc = ph.conc
	if ph.warm == 0 {
		return nil
	}
	src, err := ph.source(ph.warm)
	if err != nil {
		return err
	}
	if s := d.run(ctx, ph.warm, src, ph.want, ph.check); s.errs == s.n {
		return fmt.Errorf("%s: every warm-up request failed: %s", ph.row.Name, s.firstErr)
	}
	return nil
}

// round sends n requests of ph and adds what they cost Caddy to its row.
func (b *bench) round(ctx context.Context, ph phase, d *driver, n int) error {
	src, err := ph.source(n)
	if err != nil {
		return err
	}
	m0, err := b.caddy.memStats()
	if err != nil {
		return err
	}
	c0, err := b.caddy.cpu()
	if err != nil {
		return err
	}
	s := d.run(ctx, n, src, ph.want, ph.check)
	c1, err := b.caddy.cpu()
	if err != nil {
		return err
	}
	m1, err := b.caddy.memStats()
	if err != nil {
		return err
	}
	ph.row.add(s, c1-c0)
	ph.row.Mallocs += sub(m1.Mallocs, m0.Mallocs+b.scrape.Mallocs)
	ph.row.Bytes += sub(m1.TotalAlloc, m0.TotalAlloc+b.scrape.TotalAlloc)
	return nil
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func (ph phase) source(n int) (source, error) {
	if ph.gen != nil {
		return ph.gen, nil
	}
	reqs, err := ph.batch(n)
	if err != nil {
		return nil, fmt.Errorf("%s: preparing requests: %w", ph.row.Name, err)
	}
	return fromSlice(reqs), nil
}

// roundSize is how many requests the next round sends: about roundTime's worth at the
// rate seen so far (a fixed number of generated requests: all in one round).
func (ph phase) roundSize(r *Row, dur time.Duration) int {
	rate := r.RPS()
	if r.Requests == 0 {
		rate = float64(20*ph.conc) / roundTime.Seconds()
	}
	if ph.total > 0 {
		left := ph.total - int(r.Requests)
		if ph.gen != nil {
			return max(left, 0)
		}
		return max(0, min(left, int(rate*roundTime.Seconds())+ph.conc))
	}
	left := dur - r.Wall
	if left <= 0 {
		return 0
	}
	return max(ph.conc, int(rate*min(left, roundTime).Seconds()))
}
