package main

import "fmt"

// Verdict is one acceptance criterion of issue 12 and what the run measured.
type Verdict struct {
	Name     string
	Got      string
	Measured bool
	Pass     bool
}

// Result is PASS, FAIL, or "-" when the run did not measure it.
func (v Verdict) Result() string {
	switch {
	case !v.Measured:
		return "-"
	case v.Pass:
		return "PASS"
	}
	return "FAIL"
}

// Verdicts checks the measurements against issue 12's acceptance criteria.
func (r *Report) Verdicts() []Verdict {
	out := []Verdict{
		r.overheadVerdict(rowHWK, 1.30),
		r.overheadVerdict(rowToken, 1.40),
		r.overheadVerdict(rowJWKS, 1.35),
		r.refusedVerdict(rowGarbage),
		r.refusedVerdict(rowExpired),
	}
	v := Verdict{Name: "token-cached p99 <= 3 x p50 (-c)"}
	if row := r.Row(rowToken); row != nil && row.Requests > 0 {
		v.Measured, v.Pass = true, row.P99 <= 3*row.P50
		v.Got = fmt.Sprintf("p50 %.2f ms, p99 %.2f ms (%.1f x)", ms(row.P50), ms(row.P99), float64(row.P99)/float64(max(row.P50, 1)))
	}
	out = append(out, v)
	v = Verdict{Name: "issuance >= 1000 tokens/s"}
	if row := r.Row(rowIssuance); row != nil && row.Requests > 0 {
		v.Measured, v.Pass = true, row.RPS() >= 1000 && row.Errors == 0
		v.Got = fmt.Sprintf("%.0f tokens/s, %.0f µs Caddy CPU each", row.RPS(), row.CPUPerReq())
	}
	out = append(out, v)
	return append(out, r.memoryVerdicts()...)
}

func (r *Report) overheadVerdict(name string, limit float64) Verdict {
	v := Verdict{Name: fmt.Sprintf("%s overhead <= %.2f verifies", name, limit)}
	row := r.Row(name)
	if row == nil {
		return v
	}
	o, ver, ok := r.Overhead(row)
	if !ok || r.Verify() == 0 {
		return v
	}
	v.Measured, v.Pass = true, ver <= limit && row.Errors == 0
	v.Got = fmt.Sprintf("%.2f verifies", ver)
	if se, ok := r.VerifiesSE(row); ok {
		v.Got += fmt.Sprintf(" ± %.2f", se)
	}
	v.Got += fmt.Sprintf(" (%.1f µs over %s, verify %.1f µs)", o, row.Base, us(r.Verify()))
	if f, t := r.FloorVerify(), r.TightVerify(); f > 0 && t > 0 {
		v.Got += fmt.Sprintf("; %.2f tight-loop verifies of %.1f µs", o/us(t), us(t))
	}
	return v
}

func (r *Report) refusedVerdict(name string) Verdict {
	v := Verdict{Name: name + " <= 5 µs (over a static 401, same bytes)"}
	row := r.Row(name)
	if row == nil {
		return v
	}
	o, _, ok := r.Overhead(row)
	if !ok {
		return v
	}
	v.Measured, v.Pass = true, o <= 5 && row.Errors == 0
	v.Got = fmt.Sprintf("%.1f", o)
	if se, _, ok := r.OverheadSE(row); ok {
		v.Got += fmt.Sprintf(" ± %.1f", se)
	}
	v.Got += fmt.Sprintf(" µs over a static 401 (%.1f µs in all)", row.CPUPerReq())
	return v
}

func (r *Report) memoryVerdicts() []Verdict {
	m := r.Memory
	rss := Verdict{Name: "RSS after hostile <= 2 x before"}
	heap := Verdict{Name: "Go heap after hostile <= 2 x before"}
	if !m.Measured || m.IdleRSS == 0 || m.IdleHeap == 0 {
		return []Verdict{rss, heap}
	}
	rss.Measured, rss.Pass = true, m.AfterRSS <= 2*m.IdleRSS
	rss.Got = fmt.Sprintf("%.1f -> %.1f MiB (%.2f x)", mib(m.IdleRSS), mib(m.AfterRSS), float64(m.AfterRSS)/float64(m.IdleRSS))
	heap.Measured, heap.Pass = true, m.AfterHeap <= 2*m.IdleHeap
	heap.Got = fmt.Sprintf("%.1f -> %.1f MiB (%.2f x)", mib(int64(m.IdleHeap)), mib(int64(m.AfterHeap)), float64(m.AfterHeap)/float64(m.IdleHeap))
	return []Verdict{rss, heap}
}
