package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// caddyProc is the Caddy process under measurement.
type caddyProc struct {
	cmd   *exec.Cmd
	pid   int
	admin string // host:port of the admin endpoint
	log   *tail
	done  chan struct{} // closed when the process has exited
	err   error         // its exit status, once done is closed
}

// startCaddy runs bin (or this program as Caddy) on the Caddyfile in dir, with Caddy's
// config, data and cache folders inside dir so nothing of the user's Caddy is touched.
// gogc, when set, is Caddy's GOGC (the benchmark's own collector keeps its setting).
func startCaddy(ctx context.Context, bin, dir, caddyfile, admin, gogc string) (*caddyProc, error) {
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		return nil, err
	}
	env := os.Environ()
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		bin = self
		env = append(env, envRunCaddy+"=1")
	}
	for _, v := range []string{"XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HOME"} {
		d := filepath.Join(dir, strings.ToLower(v))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		env = append(env, v+"="+d)
	}
	if gogc != "" {
		env = append(env, "GOGC="+gogc) // the last of duplicate names wins (os/exec)
	}
	p := &caddyProc{admin: admin, log: &tail{max: 64 << 10}, done: make(chan struct{})}
	p.cmd = caddyCommand(bin, "run", "--config", path, "--adapter", "caddyfile")
	p.cmd.Env, p.cmd.Dir = env, dir
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	// The Caddy process dies with the benchmark, however the benchmark ends.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	p.pid = p.cmd.Process.Pid
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	if err := p.waitReady(ctx); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w\nCaddy's log:\n%s", err, p.log.String())
	}
	return p, nil
}

// waitReady waits for the admin endpoint.
func (p *caddyProc) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("caddy exited: %v", p.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := http.Get("http://" + p.admin + "/config/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
	}
	return fmt.Errorf("caddy's admin endpoint %s did not answer within 60s", p.admin)
}

// stop ends Caddy with SIGTERM (SIGKILL after 10 s).
func (p *caddyProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cpu is the process's CPU time so far (all threads, user and system): its process CPU
// clock, else utime+stime from /proc/<pid>/stat (fields 14 and 15, in clock ticks of
// 1/100 s: USER_HZ on Linux).
func (p *caddyProc) cpu() (time.Duration, error) {
	// The process's CPU clock (clock_gettime of MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED),
	// which any process may read): the scheduler's nanoseconds, where /proc/<pid>/stat
	// counts 10 ms ticks, too coarse for short rounds.
	var ts unix.Timespec
	if err := unix.ClockGettime(int32(^p.pid)<<3|2, &ts); err == nil {
		return time.Duration(ts.Nano()), nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unreadable /proc/%d/stat", p.pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", p.pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unreadable /proc/%d/stat", p.pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// rss is the resident set size and its peak (VmRSS, VmHWM from /proc/<pid>/status), bytes.
func (p *caddyProc) rss() (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak, nil
}

// memStats are the Go runtime counters of the Caddy process (runtime.MemStats, served
// by the admin endpoint's /debug/vars).
type memStats struct {
	Mallocs    uint64
	TotalAlloc uint64
	HeapAlloc  uint64
	HeapInuse  uint64
	Sys        uint64
	NumGC      uint32
}

func (p *caddyProc) memStats() (memStats, error) {
	var v struct {
		MemStats memStats `json:"memstats"`
	}
	resp, err := http.Get("http://" + p.admin + "/debug/vars")
	if err != nil {
		return v.MemStats, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return v.MemStats, fmt.Errorf("GET /debug/vars: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&v)
	return v.MemStats, err
}

// gc makes Caddy collect garbage (the admin endpoint's heap profile with gc=1 does).
func (p *caddyProc) gc() error {
	resp, err := http.Get("http://" + p.admin + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// tail keeps the last max bytes written to it (Caddy's log).
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 2*t.max { // shift rarely: amortised O(1) per byte
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf[max(0, len(t.buf)-t.max):])
}
