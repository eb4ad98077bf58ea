package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// envPinned carries the CPU split into the re-executed benchmark: "CADDY|LOAD", two
// taskset CPU lists. Set, it means this process already runs on LOAD.
const envPinned = "AAUTH_BENCH_PINNED"

// Layout is where the processes of a run ran.
type Layout struct {
	CaddyCPUs, LoadCPUs string // taskset lists; empty when not pinned
	Why                 string // why not pinned
}

func (l Layout) String() string {
	if l.CaddyCPUs == "" {
		return "not pinned (" + l.Why + "): Caddy, load generator and upstream share every CPU"
	}
	return fmt.Sprintf("Caddy on CPU %s; load generator and upstream on CPU %s (taskset)", l.CaddyCPUs, l.LoadCPUs)
}

// cpus is the number of CPUs of the split, both sides.
func (l Layout) cpus() int {
	n, _ := cpuCount(l.CaddyCPUs)
	m, _ := cpuCount(l.LoadCPUs)
	return n + m
}

// pinned is the layout this process runs in, from envPinned.
func pinned() (Layout, bool) {
	v := os.Getenv(envPinned)
	caddy, load, ok := strings.Cut(v, "|")
	if !ok || caddy == "" || load == "" {
		return Layout{}, false
	}
	return Layout{CaddyCPUs: caddy, LoadCPUs: load}, true
}

// pinSelf re-executes the benchmark under taskset on half the CPUs this process may
// use, with Caddy to get the other half, so that the load generator and the upstream
// do not compete with Caddy for a CPU: their scheduling would show in the latencies
// measured of Caddy. It returns only when it cannot, with the reason.
func pinSelf() Layout {
	allowed, err := allowedCPUs()
	if err != nil {
		return Layout{Why: err.Error()}
	}
	if len(allowed) < 2 {
		return Layout{Why: "1 CPU"}
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return Layout{Why: "no taskset (util-linux)"}
	}
	half := (len(allowed) + 1) / 2
	l := Layout{CaddyCPUs: cpuList(allowed[:half]), LoadCPUs: cpuList(allowed[half:])}
	self, err := os.Executable()
	if err != nil {
		return Layout{Why: err.Error()}
	}
	args := append([]string{"taskset", "-c", l.LoadCPUs, self}, os.Args[1:]...)
	env := append(os.Environ(), envPinned+"="+l.CaddyCPUs+"|"+l.LoadCPUs)
	err = syscall.Exec(taskset, args, env)
	return Layout{Why: "exec taskset: " + err.Error()}
}

// caddyCommand is the command that runs Caddy: under taskset on Caddy's CPUs when
// this run is pinned.
func caddyCommand(bin string, args ...string) *exec.Cmd {
	if l, ok := pinned(); ok {
		if taskset, err := exec.LookPath("taskset"); err == nil {
			return exec.Command(taskset, append([]string{"-c", l.CaddyCPUs, bin}, args...)...)
		}
	}
	return exec.Command(bin, args...)
}

// allowedCPUs is the CPUs this process may run on (Cpus_allowed_list, proc(5)).
func allowedCPUs() ([]int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return parseCPUList(strings.TrimSpace(v))
		}
	}
	return nil, fmt.Errorf("no Cpus_allowed_list in /proc/self/status")
}

// parseCPUList parses a kernel CPU list: "0-3,6,8-9".
func parseCPUList(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("CPU list %q: bad CPU %q", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			if len(out) > 0 && c <= out[len(out)-1] {
				return nil, fmt.Errorf("CPU list %q is not ascending", s)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// cpuList formats CPUs as a taskset list.
func cpuList(cpus []int) string {
	parts := make([]string, len(cpus))
	for i, c := range cpus {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ",")
}

func cpuCount(list string) (int, error) {
	c, err := parseCPUList(list)
	return len(c), err
}
