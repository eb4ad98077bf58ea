//go:build unix

package state_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
)

// keyKind is what lies behind a key before a race on it, and how many racers may win.
type keyKind struct {
	name    string
	prepare func(t *testing.T, fst *certmagic.FileStorage, key string)
	winners int32
}

var keyKinds = []keyKind{
	{"fresh", func(*testing.T, *certmagic.FileStorage, string) {}, 1},
	{"expired mark", func(t *testing.T, fst *certmagic.FileStorage, key string) {
		mustOnce(t, state.NewStorage(fst), key, time.Now().Add(-time.Second), true)
	}, 1},
	{"live mark", func(t *testing.T, fst *certmagic.FileStorage, key string) {
		mustOnce(t, state.NewStorage(fst), key, time.Now().Add(time.Hour), true)
	}, 0},
	{"expired per-key file", func(t *testing.T, fst *certmagic.FileStorage, key string) {
		writeFile(t, fst.Filename(key), `{"exp":1}`)
	}, 1},
	{"live per-key file", func(t *testing.T, fst *certmagic.FileStorage, key string) {
		writeFile(t, fst.Filename(key), `{"exp":`+strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)+`}`)
	}, 0},
}

// raceKeys runs 32 goroutines on each of inst, each calling Once on every key (in its
// own order), and returns how many calls were first per key; any error fails the test.
func raceKeys(t *testing.T, inst []*state.Storage, keys []string, exp time.Time) []int32 {
	t.Helper()
	wins := make([]int32, len(keys))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range 32 * len(inst) {
		wg.Go(func() {
			<-start
			for j := range keys {
				i := (j + g*7) % len(keys)
				ok, err := inst[g%len(inst)].Once(context.Background(), keys[i], exp)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					atomic.AddInt32(&wins[i], 1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	return wins
}

// TestOnceLogRace: two Storages on one folder (as two processes), 32 callers each,
// racing on many keys of every kind: exactly one caller is first for each key that is
// not used, none for a used one.
func TestOnceLogRace(t *testing.T) {
	dir := t.TempDir()
	fst := &certmagic.FileStorage{Path: dir}
	var keys []string
	var want []int32
	for _, kind := range keyKinds {
		for k := range 40 {
			key := "aauth/test/" + strings.ReplaceAll(kind.name, " ", "-") + "/" + strconv.Itoa(k)
			kind.prepare(t, fst, key)
			keys, want = append(keys, key), append(want, kind.winners)
		}
	}
	inst := []*state.Storage{state.NewStorage(fst), state.NewStorage(&certmagic.FileStorage{Path: dir})}
	wins := raceKeys(t, inst, keys, time.Now().Add(time.Minute))
	for i, key := range keys {
		if wins[i] != want[i] {
			t.Errorf("%s: %d of 64 callers were first, want %d", key, wins[i], want[i])
		}
	}
	// and now every key is used, for a third Storage reading the logs from scratch
	for _, key := range keys {
		mustOnce(t, state.NewStorage(fst), key, time.Now().Add(time.Minute), false)
	}
}

// TestOnceFileRecords: what Once answers for what lies at the key's per-key file (from
// before the logs).
func TestOnceFileRecords(t *testing.T) {
	live := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		fresh   bool
		wantErr bool
	}{
		{"absent", func(*testing.T, string) {}, true, false},
		{"live record", func(t *testing.T, p string) { writeFile(t, p, `{"exp":`+live+`}`) }, false, false},
		{"expired record", func(t *testing.T, p string) { writeFile(t, p, `{"exp":1}`) }, true, false},
		{"empty file", func(t *testing.T, p string) { writeFile(t, p, "") }, false, false},
		{"unreadable record", func(t *testing.T, p string) { writeFile(t, p, `{"ex`) }, false, false},
		{"parent is a file", func(t *testing.T, p string) { writeFile(t, filepath.Dir(p), "x") }, false, true},
		{"key is a folder", func(t *testing.T, p string) {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fst := &certmagic.FileStorage{Path: t.TempDir()}
			key := "aauth/test/jti/k"
			tt.prepare(t, fst.Filename(key))
			fresh, err := state.NewStorage(fst).Once(context.Background(), key, time.Now().Add(time.Minute))
			if fresh != tt.fresh || (err != nil) != tt.wantErr {
				t.Fatalf("Once = %v, %v; want fresh %v, error %v", fresh, err, tt.fresh, tt.wantErr)
			}
		})
	}
}

// TestOnceLogRecordFormat: a mark is one fixed-size line in the key's stripe log.
func TestOnceLogRecordFormat(t *testing.T) {
	tests := []struct {
		name string
		exp  int64
		want string
	}{
		{"now", 1_900_000_000, "1900000000"},
		{"small", 1, "0000000001"},
		{"before 1970", -5, "0000000000"},
		{"after 2286", 10_000_000_000, "10000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fst := &certmagic.FileStorage{Path: t.TempDir()}
			key := "aauth/test/k"
			mustOnce(t, state.NewStorage(fst), key, time.Unix(tt.exp, 0), true)
			raw, err := os.ReadFile(filepath.Join(fst.Path, state.OnceLogName(key)))
			sum := sha256.Sum256([]byte(key))
			if want := tt.want + " " + hex.EncodeToString(sum[:16]) + "\n"; err != nil || string(raw) != want {
				t.Fatalf("log %q, %v; want %q", raw, err, want)
			}
		})
	}
}

// TestOnceLogRespectsContext: a log held by another process makes Once wait, until its
// context ends; it then fails and marks nothing.
func TestOnceLogRespectsContext(t *testing.T) {
	fst := &certmagic.FileStorage{Path: t.TempDir()}
	key := "aauth/test/held"
	mustOnce(t, state.NewStorage(fst), "aauth/test/other", time.Now().Add(time.Hour), true) // creates the folder
	f, err := os.OpenFile(filepath.Join(fst.Path, state.OnceLogName(key)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	s := state.NewStorage(fst)
	if ok, err := s.Once(ctx, key, time.Now().Add(time.Hour)); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Once on a held log: %v, %v; want deadline exceeded", ok, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	mustOnce(t, s, key, time.Now().Add(time.Hour), true)
}

func mustOnce(t *testing.T, s *state.Storage, key string, exp time.Time, fresh bool) {
	t.Helper()
	if ok, err := s.Once(context.Background(), key, exp); ok != fresh || err != nil {
		t.Fatalf("Once(%s) = %v, %v; want %v", key, ok, err, fresh)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
