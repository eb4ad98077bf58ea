//go:build unix

package state_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
)

// raceOnce runs 32 goroutines on each of two Storages over one directory, all calling
// Once on key, and returns how many were first; any error fails the test.
func raceOnce(t *testing.T, inst [2]*state.Storage, key string, exp time.Time) int32 {
	t.Helper()
	var fresh atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 64 {
		wg.Go(func() {
			<-start
			ok, err := inst[i%2].Once(context.Background(), key, exp)
			if err != nil {
				t.Error(err)
			}
			if ok {
				fresh.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return fresh.Load()
}

// TestOnceFileRace: two Storages on one folder (as two processes), 32 callers each,
// racing on fresh keys, on keys holding an expired record, and on keys whose folder
// does not exist yet: exactly one caller is first each time.
func TestOnceFileRace(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string) // nil: key absent
	}{
		{"fresh", nil},
		{"expired record", func(t *testing.T, path string) {
			writeFile(t, path, `{"exp":1}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fst := &certmagic.FileStorage{Path: dir}
			inst := [2]*state.Storage{state.NewStorage(fst), state.NewStorage(&certmagic.FileStorage{Path: dir})}
			for k := range 8 {
				key := "aauth/test/" + strconv.Itoa(k) + "/jti"
				if tt.prepare != nil {
					tt.prepare(t, fst.Filename(key))
				}
				if n := raceOnce(t, inst, key, time.Now().Add(time.Minute)); n != 1 {
					t.Fatalf("key %d: %d of 64 callers were first, want exactly 1", k, n)
				}
				raw, err := os.ReadFile(fst.Filename(key))
				if err != nil || len(raw) < len(`{"exp":1}`) || string(raw) == `{"exp":1}` {
					t.Fatalf("key %d: record %q, %v; want a new live record", k, raw, err)
				}
			}
		})
	}
}

// TestOnceFileRecords: what Once answers for what lies at the key.
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

// TestOnceFileRecordFormat: the O_EXCL path writes the record the locked path writes.
func TestOnceFileRecordFormat(t *testing.T) {
	fst := &certmagic.FileStorage{Path: t.TempDir()}
	exp := time.Unix(1_900_000_000, 0)
	if ok, err := state.NewStorage(fst).Once(context.Background(), "aauth/test/k", exp); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if raw, err := os.ReadFile(fst.Filename("aauth/test/k")); err != nil || string(raw) != `{"exp":1900000000}` {
		t.Fatalf("record %q, %v", raw, err)
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
