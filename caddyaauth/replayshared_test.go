package caddyaauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/replay"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// flakyState is a state.Store whose Once fails while down is set.
type flakyState struct {
	state.Store
	down  atomic.Bool
	calls atomic.Int64
}

func (f *flakyState) Once(ctx context.Context, key string, exp time.Time) (bool, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return false, errors.New("connection refused")
	}
	return f.Store.Once(ctx, key, exp)
}

// twoInstances are two auth-token handlers, each with its own memory store, sharing st.
func twoInstances(t *testing.T, mode string, st state.Store) (*keys.Signer, string, [2]*Handler) {
	as, _ := keys.Generate(keys.AlgEd25519, "as-1")
	ag, _ := keys.Generate(keys.AlgEd25519, "")
	tok := mintAuthToken(t, as, ag.Public, time.Now(), time.Hour)
	var hs [2]*Handler
	for i := range hs {
		hs[i] = authTokenHandler(t, mode, as, tok, time.Now)
		hs[i].sharedReplay = &sharedReplay{st: st, logger: zap.NewNop()}
	}
	return ag, tok, hs
}

// TestSharedReplayAcrossInstances: with replay_store shared, a signed request accepted by
// one instance is refused by another that never saw it (its memory is empty), under
// every policy that covers the method; a policy that does not cover it lets it through
// on both; a fresh request still passes.
func TestSharedReplayAcrossInstances(t *testing.T) {
	for _, tc := range []struct {
		mode, method string
		single       bool
	}{
		{ReplayUnsafe, "POST", true},
		{ReplayAll, "GET", true},
		{ReplayUnsafe, "GET", false},
		{ReplayOff, "POST", false},
	} {
		t.Run(tc.mode+"/"+tc.method, func(t *testing.T) {
			st := state.NewStorage(&certmagic.FileStorage{Path: t.TempDir()})
			ag, tok, hs := twoInstances(t, tc.mode, st)
			req := jwtRequest(t, ag, tok, tc.method, "http://api.example/data", time.Now())
			if st, ok := serve(hs[0], req.Clone(t.Context())); !ok {
				t.Fatalf("first use on instance 0: %d", st)
			}
			st2, ok := serve(hs[1], req.Clone(t.Context()))
			if tc.single && (ok || st2 != http.StatusUnauthorized) {
				t.Fatalf("second use on instance 1: %d passed %v, want 401", st2, ok)
			}
			if !tc.single && !ok {
				t.Fatalf("second use on instance 1: %d, want it passed", st2)
			}
			fresh := jwtRequest(t, ag, tok, tc.method, "http://api.example/data/2", time.Now())
			if st, ok := serve(hs[1], fresh); !ok {
				t.Fatalf("fresh request on instance 1: %d", st)
			}
		})
	}
}

// TestSharedReplayConcurrent: one signed POST sent 20 times at once, split over two
// instances with their own memory: exactly one passes.
func TestSharedReplayConcurrent(t *testing.T) {
	st := state.NewStorage(&certmagic.FileStorage{Path: t.TempDir()})
	ag, tok, hs := twoInstances(t, ReplayUnsafe, st)
	for trial := range 5 {
		req := jwtRequest(t, ag, tok, "POST", "http://api.example/data", time.Now().Add(time.Duration(trial)*time.Second))
		var passed atomic.Int64
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				if _, ok := serve(hs[i%2], req.Clone(context.Background())); ok {
					passed.Add(1)
				}
			})
		}
		wg.Wait()
		if n := passed.Load(); n != 1 {
			t.Fatalf("trial %d: %d of 20 passed, want 1", trial, n)
		}
	}
}

// TestSharedReplayUnavailable: when the shared store fails the request is refused with
// 503 temporarily_unavailable and Retry-After (fail closed), a copy already seen in
// memory is refused without asking the store, and once the store is back the same
// signed request passes exactly once.
func TestSharedReplayUnavailable(t *testing.T) {
	fs := &flakyState{Store: state.NewStorage(&certmagic.FileStorage{Path: t.TempDir()})}
	ag, tok, hs := twoInstances(t, ReplayUnsafe, fs)
	seen := jwtRequest(t, ag, tok, "POST", "http://api.example/seen", time.Now())
	if st, ok := serve(hs[0], seen.Clone(t.Context())); !ok {
		t.Fatalf("first use: %d", st)
	}
	fs.down.Store(true)
	calls := fs.calls.Load()
	if st, ok := serve(hs[0], seen.Clone(t.Context())); ok || st != http.StatusUnauthorized || fs.calls.Load() != calls {
		t.Fatalf("replay seen in memory while the store is down: %d passed %v, store asked %d times", st, ok, fs.calls.Load()-calls)
	}
	req := jwtRequest(t, ag, tok, "POST", "http://api.example/data", time.Now())
	for range 2 {
		w := httptest.NewRecorder()
		reached := false
		next := func(http.ResponseWriter, *http.Request) error { reached = true; return nil }
		if err := hs[0].ServeHTTP(w, req.Clone(t.Context()), caddyhttp.HandlerFunc(next)); err != nil || reached {
			t.Fatalf("store down: err %v, passed %v", err, reached)
		}
		var body wire.Error
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != http.StatusServiceUnavailable || body.Code != wire.CodeTemporarilyUnavailable || w.Header().Get("Retry-After") == "" {
			t.Fatalf("store down: %d %q Retry-After %q, want 503 temporarily_unavailable", w.Code, body.Code, w.Header().Get("Retry-After"))
		}
	}
	fs.down.Store(false)
	if st, ok := serve(hs[0], req.Clone(t.Context())); !ok {
		t.Fatalf("after the store is back: %d", st)
	}
	if st, ok := serve(hs[1], req.Clone(t.Context())); ok {
		t.Fatalf("replay on the other instance after the outage: %d passed", st)
	}
}

// TestSharedReplaySweep: the sweeper deletes buckets whose entries all expired more than
// a bucket ago, and keeps the others (entries still refusing replays).
func TestSharedReplaySweep(t *testing.T) {
	fsto := &certmagic.FileStorage{Path: t.TempDir()}
	s := newSharedReplay(nil, fsto, zap.NewNop())
	if s.sweep == nil {
		t.Fatal("file storage: no sweeper")
	}
	now := time.Unix(1774920963, 0)
	ctx := t.Context()
	keys := map[string]time.Time{}
	for i, exp := range []time.Time{now.Add(-3 * time.Minute), now.Add(-2 * time.Minute), now.Add(-time.Second), now.Add(time.Minute)} {
		k := replay.KeyOf([]byte{byte(i)})
		if err := fsto.Store(ctx, sharedReplayKey(k, exp), []byte(`{"exp":1}`)); err != nil {
			t.Fatal(err)
		}
		keys[sharedReplayKey(k, exp)] = exp
	}
	s.sweepBuckets(ctx, now)
	for key, exp := range keys {
		kept := fsto.Exists(ctx, key)
		want := exp.Unix()/replayBucket > now.Unix()/replayBucket-2
		if kept != want {
			t.Errorf("entry expiring %s before now: kept %v, want %v", now.Sub(exp), kept, want)
		}
	}
	if newSharedReplay(&flakyState{}, fsto, zap.NewNop()).sweep != nil {
		t.Error("a state backend got a storage sweeper")
	}
}

// fakeBackend stands for a loaded state backend.
type fakeBackend struct{ StateBackend }

// TestReplayStoreOption: the global option, its default and its validation.
func TestReplayStoreOption(t *testing.T) {
	for _, tc := range []struct {
		app  App
		want string
	}{
		{App{}, ReplayStoreLocal},
		{App{StateRaw: json.RawMessage(`{"backend":"redis"}`)}, ReplayStoreShared},
		{App{state: fakeBackend{}}, ReplayStoreShared}, // after Provision, which clears StateRaw
		{App{ReplayStore: ReplayStoreShared}, ReplayStoreShared},
		{App{ReplayStore: ReplayStoreLocal, StateRaw: json.RawMessage(`{}`)}, ReplayStoreLocal},
	} {
		if got := tc.app.replayStore(); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.app, got, tc.want)
		}
	}
	if err := (&App{ReplayStore: "cluster"}).Validate(); err == nil {
		t.Error("replay_store cluster validated")
	}
	v, err := parseGlobal(caddyfile.NewTestDispenser("aauth {\n replay_store shared\n}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(v.(httpcaddyfile.App).Value); !strings.Contains(got, `"replay_store":"shared"`) {
		t.Fatalf("parse: %s", got)
	}
	for _, bad := range []string{"replay_store", "replay_store cluster", "replay_store local shared"} {
		if _, err := parseGlobal(caddyfile.NewTestDispenser("aauth {\n"+bad+"\n}"), nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// BenchmarkSharedReplayFileStorage is the cost replay_store shared adds to an accepted
// unsafe request on a file_system storage: one Once (flock, read, write and rename of
// a small file).
func BenchmarkSharedReplayFileStorage(b *testing.B) {
	s := newSharedReplay(nil, &certmagic.FileStorage{Path: b.TempDir()}, zap.NewNop())
	exp := time.Now().Add(time.Minute)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := replay.KeyOf([]byte(strconv.Itoa(i)))
		if fresh, err := s.use(context.Background(), k, exp); err != nil || !fresh {
			b.Fatal(fresh, err)
		}
	}
}
