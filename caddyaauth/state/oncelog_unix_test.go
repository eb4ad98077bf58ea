//go:build unix

package state_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
)

// TestOnceLogCompaction: with a tiny compaction threshold, two Storages race on many
// keys while compacting their logs: each fresh or expired key is won exactly once, a
// live one never, and a second race wins nothing.
func TestOnceLogCompaction(t *testing.T) {
	defer state.SetOnceLogMax(256)()
	dir := t.TempDir()
	fst := &certmagic.FileStorage{Path: dir}
	setup := state.NewStorage(fst)
	const n = 1500
	keys := make([]string, n)
	want := make([]int32, n)
	short := time.Now().Add(2 * time.Second)
	for i := range keys {
		keys[i] = "aauth/test/compact/" + strconv.Itoa(i)
		switch i % 5 {
		case 0, 1, 2: // fresh: the race at least doubles each log, so compacts it
			want[i] = 1
		case 3: // marked until short: expired by the race
			mustOnce(t, setup, keys[i], short, true)
			want[i] = 1
		case 4: // marked for an hour
			mustOnce(t, setup, keys[i], time.Now().Add(time.Hour), true)
		}
	}
	before := logInodes(t, dir)
	time.Sleep(time.Until(short) + 10*time.Millisecond)
	inst := []*state.Storage{state.NewStorage(fst), state.NewStorage(&certmagic.FileStorage{Path: dir})}
	wins := raceKeys(t, inst, keys, time.Now().Add(time.Hour))
	for i, key := range keys {
		if wins[i] != want[i] {
			t.Errorf("%s: %d callers were first, want %d", key, wins[i], want[i])
		}
	}
	for i, w := range raceKeys(t, inst, keys, time.Now().Add(time.Hour)) {
		if w != 0 {
			t.Errorf("%s: won %d times again", keys[i], w)
		}
	}
	after := logInodes(t, dir)
	replaced := 0
	for name, ino := range after {
		if strings.HasSuffix(name, ".tmp") {
			t.Errorf("%s left behind", name)
		}
		if before[name] != ino {
			replaced++
		}
	}
	t.Logf("%d of %d logs compacted during the race", replaced, len(after))
	if replaced < len(after)/2 {
		t.Errorf("%d of %d logs compacted during the race, want more", replaced, len(after))
	}
}

// logInodes maps each file under the Once logs' folder to its inode.
func logInodes(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "aauth_once"))
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]uint64)
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = uint64(info.Sys().(*syscall.Stat_t).Ino)
	}
	return m
}

// sameStripe returns n keys whose marks share a log with key.
func sameStripe(key string, n int) []string {
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := "aauth/test/torn/" + strconv.Itoa(i)
		if k != key && state.OnceLogName(k) == state.OnceLogName(key) {
			keys = append(keys, k)
		}
	}
	return keys
}

// TestOnceLogTorn: a log ending inside a line (its writer failed part way, and never
// got true) lets no key win twice, and breaks no record written after it, whether the
// reader had read up to the torn line or reads the log from scratch.
func TestOnceLogTorn(t *testing.T) {
	key := "aauth/test/torn/key"
	sum := sha256.Sum256([]byte(key))
	rec := "1900000000 " + hex.EncodeToString(sum[:16]) + "\n"
	tests := []struct {
		name string
		torn string
	}{
		{"prefix of the key's record", rec[:len(rec)-5]},
		{"prefix without its hex", rec[:11]},
		{"zeros", strings.Repeat("\x00", 300)},
		{"longer than a read", strings.Repeat("7", 40<<10)},
		{"two torn lines", rec[:20] + "\n" + rec[:30]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fst := &certmagic.FileStorage{Path: t.TempDir()}
			others := sameStripe(key, 3)
			exp := time.Now().Add(time.Hour)
			early := state.NewStorage(fst)
			mustOnce(t, early, others[0], exp, true)
			appendLog(t, fst, key, tt.torn)
			// the torn writer did not get true: the key is still unused, once
			late := state.NewStorage(fst)
			mustOnce(t, late, key, exp, true)
			mustOnce(t, late, others[1], exp, true)
			mustOnce(t, early, others[2], exp, true)
			for i, s := range []*state.Storage{early, late, state.NewStorage(fst)} {
				for _, k := range append([]string{key}, others...) {
					if ok, err := s.Once(context.Background(), k, exp); ok || err != nil {
						t.Fatalf("reader %d: %s fresh %v, %v after the torn line; want used", i, k, ok, err)
					}
				}
			}
		})
	}
}

// appendLog appends raw to the log holding key's mark.
func appendLog(t *testing.T, fst *certmagic.FileStorage, key, raw string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(fst.Path, state.OnceLogName(key)), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(raw); err != nil {
		t.Fatal(err)
	}
}

// Child processes of TestOnceLogProcesses: the test binary run again with these set.
const (
	childDirEnv = "STATE_TEST_ONCE_CHILD_DIR"
	childKeys   = 600
)

// TestMain runs a racing child when asked to (see TestOnceLogProcesses).
func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		os.Exit(onceChild(dir))
	}
	os.Exit(m.Run())
}

// onceChild races 16 goroutines over childKeys keys in dir (compacting small logs) and
// prints the keys it won, one a line.
func onceChild(dir string) int {
	state.SetOnceLogMax(1024)
	s := state.NewStorage(&certmagic.FileStorage{Path: dir})
	for !fileExists(filepath.Join(dir, "go")) { // start together
		time.Sleep(time.Millisecond)
	}
	var mu sync.Mutex
	var out bytes.Buffer
	var wg sync.WaitGroup
	failed := false
	for g := range 16 {
		wg.Go(func() {
			for j := range childKeys {
				key := "aauth/test/proc/" + strconv.Itoa((j+g*37)%childKeys)
				ok, err := s.Once(context.Background(), key, time.Now().Add(time.Hour))
				mu.Lock()
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					failed = true
				}
				if ok {
					fmt.Fprintln(&out, key)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	os.Stdout.Write(out.Bytes())
	if failed {
		return 1
	}
	return 0
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// TestOnceLogProcesses: three processes race on the same keys in one folder: each key
// has exactly one winner across them.
func TestOnceLogProcesses(t *testing.T) {
	dir := t.TempDir()
	// a third of the keys have an expired per-key file from before the logs
	fst := &certmagic.FileStorage{Path: dir}
	for i := 0; i < childKeys; i += 3 {
		writeFile(t, fst.Filename("aauth/test/proc/"+strconv.Itoa(i)), `{"exp":1}`)
	}
	outs := make([]bytes.Buffer, 3)
	var cmds []*exec.Cmd
	for i := range outs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
		cmd.Stdout, cmd.Stderr = &outs[i], os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	writeFile(t, filepath.Join(dir, "go"), "")
	wins := make(map[string]int)
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v", i, err)
		}
		for _, key := range strings.Fields(outs[i].String()) {
			wins[key]++
		}
	}
	for i := range childKeys {
		if key := "aauth/test/proc/" + strconv.Itoa(i); wins[key] != 1 {
			t.Errorf("%s won %d times across processes, want 1", key, wins[key])
		}
	}
}
