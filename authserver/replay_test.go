package authserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

func TestReplayStore(t *testing.T) {
	ctx := context.Background()
	st := newTestStorage(t)
	s := newReplayStore("https://as.example", st, zap.NewNop())
	defer s.Destruct()
	// The storage records expire on the real clock (they are shared by every instance).
	now := time.Now().Truncate(time.Second)
	exp := now.Add(5 * time.Minute)

	use := func(iss, jti string, exp, at time.Time) bool {
		t.Helper()
		ok, err := s.use(ctx, iss, jti, exp, at)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !use("https://r.example", "j1", exp, now) {
		t.Fatal("first use refused")
	}
	if use("https://r.example", "j1", exp, now.Add(time.Minute)) {
		t.Fatal("replay accepted")
	}
	if !use("https://r2.example", "j1", exp, now) {
		t.Fatal("same jti from another resource refused")
	}
	// The record has the documented storage key and holds the expiry.
	sum := sha256.Sum256([]byte("https://r.example\nj1"))
	key := path.Join("aauth/issuer/https-as.example/jti", hex.EncodeToString(sum[:]))
	raw, err := st.Load(ctx, key)
	if err != nil || string(raw) != fmt.Sprintf(`{"exp":%d}`, exp.Unix()) {
		t.Fatalf("record %s: %q %v", key, raw, err)
	}

	// Storage alone (a fresh process) still refuses the replay.
	s2 := newReplayStore("https://as.example", st, zap.NewNop())
	defer s2.Destruct()
	if ok, err := s2.use(ctx, "https://r.example", "j1", exp, now); ok || err != nil {
		t.Fatalf("replay after restart: %v %v", ok, err)
	}

	// A record whose expiry passed no longer blocks (the token itself is dead by then).
	past := time.Now().Add(-time.Second)
	if !use("https://r.example", "j2", past, past) || !use("https://r.example", "j2", past, now) {
		t.Fatal("expired record still blocks")
	}

	// Storage read failures fail closed.
	st.failLoad = func(string) bool { return true }
	if ok, err := s2.use(ctx, "https://r.example", "j9", exp, now); ok || err == nil {
		t.Fatalf("load failure: %v %v", ok, err)
	}
}

func TestReplayStoreConcurrent(t *testing.T) {
	s := newReplayStore("https://as.example", newTestStorage(t), zap.NewNop())
	defer s.Destruct()
	now := time.Unix(1_800_000_000, 0)
	var accepted atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jti := []string{"a", "b", "c", "d"}[i%4]
			if ok, err := s.use(context.Background(), "https://r.example", jti, now.Add(time.Minute), now); err != nil {
				t.Error(err)
			} else if ok {
				accepted.Add(1)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 4 {
		t.Fatalf("%d accepted, want 4", accepted.Load())
	}
}

func TestReplaySweep(t *testing.T) {
	ctx := context.Background()
	st := newTestStorage(t)
	s := newReplayStore("https://as.example", st, zap.NewNop())
	defer s.Destruct()
	now := time.Unix(1_800_000_000, 0)
	prefix := keystore.LayoutOf(keystore.RoleIssuer, "https://as.example").Dir(keystore.DirJTI)
	for _, c := range []struct {
		jti string
		exp time.Time
	}{{"old", now.Add(time.Minute)}, {"new", now.Add(time.Hour)}} {
		if ok, err := s.use(ctx, "https://r.example", c.jti, c.exp, now); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	// A record left by an earlier process, expired, only in storage.
	_ = st.Store(ctx, path.Join(prefix, "leftover"), []byte(`{"exp":1}`))

	s.sweep(ctx, now.Add(2*time.Minute))
	if len(s.seen) != 1 || len(st.keys(prefix)) != 2 {
		t.Fatalf("after sweep: memory %d, storage %v", len(s.seen), st.keys(prefix))
	}
	s.scan(ctx, now.Add(2*time.Minute))
	if got := st.keys(prefix); len(got) != 1 {
		t.Fatalf("after scan: storage %v", got)
	}
	// The surviving record still blocks.
	if ok, _ := s.use(ctx, "https://r.example", "new", now.Add(time.Hour), now.Add(2*time.Minute)); ok {
		t.Fatal("unexpired record lost")
	}
}

// TestReplayScanEmptyRecord: on a file_system storage a jti record is created empty and
// then written; an empty one (its writer crashed in between) refuses the jti, and the
// scan deletes it once it is older than scanGrace, never sooner.
func TestReplayScanEmptyRecord(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		age     time.Duration
		deleted bool
	}{
		{"being written", 0, false},
		{"within grace", scanGrace / 2, false},
		{"left by a crash", 2 * scanGrace, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &certmagic.FileStorage{Path: t.TempDir()}
			s := newReplayStore("https://as.example", st, zap.NewNop())
			defer s.Destruct()
			now := time.Now()
			sum := sha256.Sum256([]byte("https://r.example\nj"))
			file := st.Filename(path.Join(s.prefix, hex.EncodeToString(sum[:])))
			if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(file, now.Add(-tt.age), now.Add(-tt.age)); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.use(ctx, "https://r.example", "j", now.Add(time.Hour), now); ok || err != nil {
				t.Fatalf("jti with an empty record: fresh %v, %v; want refused", ok, err)
			}
			s.scan(ctx, now)
			if _, err := os.Stat(file); os.IsNotExist(err) != tt.deleted {
				t.Fatalf("after scan: %v; want deleted %v", err, tt.deleted)
			}
			if ok, err := s.use(ctx, "https://r.example", "j", now.Add(time.Hour), now); ok != tt.deleted || err != nil {
				t.Fatalf("after scan: fresh %v, %v; want %v", ok, err, tt.deleted)
			}
		})
	}
}

// TestReplaySweeperRuns: the background sweeper runs on its ticker and stops on Destruct.
func TestReplaySweeperRuns(t *testing.T) {
	old := sweepInterval
	sweepInterval = 5 * time.Millisecond
	defer func() { sweepInterval = old }()
	st := newTestStorage(t)
	s := newReplayStore("https://sweep.example", st, zap.NewNop())
	past := time.Now().Add(-time.Hour)
	if ok, err := s.use(context.Background(), "https://r.example", "j", past.Add(time.Minute), past); !ok || err != nil {
		t.Fatal(ok, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(st.keys(keystore.LayoutOf(keystore.RoleIssuer, "https://sweep.example").Dir(keystore.DirJTI))) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("sweeper did not delete the expired record")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Destruct(); err != nil {
		t.Fatal(err)
	}
}

// TestReplayPoolSharedAcrossReload: handlers of one issuer share a store; it lives until
// the last reference is released.
func TestReplayPoolSharedAcrossReload(t *testing.T) {
	st := newTestStorage(t)
	a, err := loadReplayStore("https://pool.example", st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadReplayStore("https://pool.example", st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("reload got a different store")
	}
	if deleted, _ := replayPool.Delete("https://pool.example"); deleted {
		t.Fatal("store destroyed while still referenced")
	}
	if deleted, _ := replayPool.Delete("https://pool.example"); !deleted {
		t.Fatal("store not destroyed after the last reference")
	}
	select {
	case <-a.done:
	default:
		t.Fatal("sweeper still running after destruct")
	}
}
