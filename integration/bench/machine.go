package main

import (
	"crypto/ed25519"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Machine describes where the run happened.
type Machine struct {
	CPU       string
	Cores     int
	Go        string
	Kernel    string
	LoadStart string // /proc/loadavg before Caddy starts
	LoadEnd   string
}

func describeMachine() Machine {
	m := Machine{CPU: "unknown", Cores: runtime.NumCPU(), Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, LoadStart: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// loadavg is the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// verifyCost is the time of one ed25519.Verify of a message the size of a typical
// signature base, the fastest of runs testing.Benchmark runs (the least disturbed by
// other load on the machine).
func verifyCost(runs int) time.Duration {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	msg := []byte(strings.Repeat("\"@method\": GET\n", 16)) // about 240 bytes
	sig := ed25519.Sign(priv, msg)
	var best time.Duration
	for range runs {
		r := testing.Benchmark(func(b *testing.B) {
			for b.Loop() {
				if !ed25519.Verify(pub, msg, sig) {
					b.Fatal("verify failed")
				}
			}
		})
		if r.N == 0 {
			continue
		}
		if d := r.T / time.Duration(r.N); best == 0 || d < best {
			best = d
		}
	}
	return best
}
