package authserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
)

// replayPool holds one replay store per issuer, shared by every handler instance of that
// issuer, so a config reload (which briefly runs old and new handlers side by side) cannot
// accept a jti twice.
var replayPool = caddy.NewUsagePool()

// How often the sweeper drops expired jti records, and how often it also scans storage
// for records left behind by earlier processes.
var (
	sweepInterval = time.Minute
	scanInterval  = time.Hour
)

// replayStore remembers the resource-token jtis an issuer has accepted, so each is
// accepted once (draft-hardt-aauth §16.2.3: jti not seen before). Records live in storage under
// aauth/issuer/<safe issuer>/jti/<hex sha256(iss "\n" jti)>, holding the token's expiry, so
// a restart or another instance on the same storage still refuses a replay; an in-memory
// index answers repeat submissions without storage reads. Check-and-store is one
// state.Store.Once step, atomic across every instance sharing the storage.
type replayStore struct {
	prefix string
	logger *zap.Logger

	storageRef

	mu   sync.Mutex
	seen map[string]int64 // record name → exp (unix seconds)

	cancel context.CancelFunc
	done   chan struct{}
}

type replayRecord struct {
	Exp int64 `json:"exp"`
}

func newReplayStore(issuer string, st certmagic.Storage, logger *zap.Logger) *replayStore {
	ctx, cancel := context.WithCancel(context.Background())
	s := &replayStore{
		prefix: keystore.LayoutOf(keystore.RoleIssuer, issuer).Dir(keystore.DirJTI),
		logger: logger,
		seen:   map[string]int64{},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	s.setStorage(st)
	go s.sweeper(ctx)
	return s
}

// loadReplayStore returns the pooled store for issuer, pointing it at st (the newest
// config's storage wins); release it with replayPool.Delete(issuer).
func loadReplayStore(issuer string, st certmagic.Storage, logger *zap.Logger) (*replayStore, error) {
	v, _, err := replayPool.LoadOrNew(issuer, func() (caddy.Destructor, error) {
		return newReplayStore(issuer, st, logger.Named("replay")), nil
	})
	if err != nil {
		return nil, fmt.Errorf("replay store: %w", err)
	}
	s := v.(*replayStore)
	s.setStorage(st)
	return s, nil
}

// storageRef is the storage a pooled store writes to, and the state store doing the
// atomic steps on it; the handler of a new config hands the shared store its storage
// again, which may have changed.
type storageRef struct {
	mu sync.RWMutex
	st certmagic.Storage
	ss state.Store
}

func (r *storageRef) setStorage(st certmagic.Storage) {
	r.mu.Lock()
	r.st, r.ss = st, stateOf(st)
	r.mu.Unlock()
}

// stateOf returns st's own atomic steps when it has them (the Redis storage and state
// backend: SET NX, WATCH/MULTI), else the lock-around-storage steps of state.Storage.
func stateOf(st certmagic.Storage) state.Store {
	if ss, ok := st.(state.Store); ok {
		return ss
	}
	return state.NewStorage(st)
}

func (r *storageRef) storage() certmagic.Storage {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.st
}

// state returns the store for the atomic steps: every single-use check and every state
// change goes through it, so it holds across all instances sharing the storage.
func (r *storageRef) state() state.Store {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.ss
}

// Destruct stops the sweeper (called by the pool when the last handler lets go).
func (s *replayStore) Destruct() error {
	s.cancel()
	<-s.done
	return nil
}

// use records the token (iss, jti) valid until exp and reports whether this is its first
// use at now. An error means the record could not be checked or stored; the caller must
// then refuse the token. The check-and-store is one state.Store.Once step (under the
// storage's lock, re-reading storage), so of any number of instances sharing the storage
// exactly one accepts the token; the in-memory index only answers "seen" (a use never
// becomes unused before exp), never "fresh".
func (s *replayStore) use(ctx context.Context, iss, jti string, exp, now time.Time) (bool, error) {
	sum := sha256.Sum256([]byte(iss + "\n" + jti))
	name := hex.EncodeToString(sum[:])
	s.mu.Lock()
	e, ok := s.seen[name]
	s.mu.Unlock()
	if ok && now.Unix() < e {
		return false, nil
	}
	fresh, err := s.state().Once(ctx, path.Join(s.prefix, name), exp)
	if err != nil {
		return false, fmt.Errorf("jti record: %w", err)
	}
	if fresh {
		s.remember(name, exp.Unix())
	}
	return fresh, nil
}

func (s *replayStore) remember(name string, exp int64) {
	s.mu.Lock()
	s.seen[name] = exp
	s.mu.Unlock()
}

func (s *replayStore) sweeper(ctx context.Context) {
	runSweeper(ctx, s.done, func(now time.Time) { s.sweep(ctx, now) }, func(now time.Time) { s.scan(ctx, now) })
}

// runSweeper calls sweep every sweepInterval and scan at most every scanInterval until
// ctx ends, then closes done. Stores drop expired entries from memory in sweep and from
// storage in scan.
func runSweeper(ctx context.Context, done chan struct{}, sweep, scan func(now time.Time)) {
	defer close(done)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	lastScan := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			sweep(now)
			if now.Sub(lastScan) >= scanInterval {
				lastScan = now
				scan(now)
			}
		}
	}
}

// sweep drops expired records from memory and from storage.
func (s *replayStore) sweep(ctx context.Context, now time.Time) {
	var expired []string
	s.mu.Lock()
	for name, exp := range s.seen {
		if now.Unix() >= exp {
			expired = append(expired, name)
			delete(s.seen, name)
		}
	}
	s.mu.Unlock()
	for i, name := range expired {
		expired[i] = path.Join(s.prefix, name)
	}
	deleteKeys(ctx, s.storage(), expired, s.logger, "deleting expired jti record")
}

// deleteKeys removes keys from storage; a key already gone is fine.
func deleteKeys(ctx context.Context, st certmagic.Storage, keys []string, logger *zap.Logger, msg string) {
	for _, k := range keys {
		if ctx.Err() != nil {
			return
		}
		if err := st.Delete(ctx, k); err != nil && !errors.Is(err, fs.ErrNotExist) {
			logger.Error(msg, zap.Error(err))
		}
	}
}

// scan deletes expired records found in storage, including ones written before this
// process started.
func (s *replayStore) scan(ctx context.Context, now time.Time) {
	scanExpired(ctx, s.storage(), s.prefix, now, s.logger, "jti record", func(raw []byte) (int64, bool) {
		var rec replayRecord
		if json.Unmarshal(raw, &rec) != nil {
			return 0, false
		}
		return rec.Exp, true
	})
}

// scanGrace is how old an entry must be before a scan deletes it:
// certmagic.FileStorage writes a temp file next to the record and renames it, and
// state.Storage's Once used to create a jti record empty (O_EXCL) and then write it (it
// now keeps its marks in logs, but honours such records); a scan must not delete either
// file while it is being written. An empty record older than this was left by a writer
// that crashed in between: it refuses its jti until the scan deletes it. (Expired records this process wrote are dropped by the in-memory sweep
// anyway.)
const scanGrace = time.Minute

// scanExpired deletes the records under prefix whose expiry (read from each record by
// expiryOf) has passed, or that cannot be read as records at all, once they were last
// written more than scanGrace ago.
func scanExpired(ctx context.Context, st certmagic.Storage, prefix string, now time.Time, logger *zap.Logger, what string, expiryOf func([]byte) (int64, bool)) {
	names, err := st.List(ctx, prefix, false)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			logger.Error("listing "+what+"s", zap.Error(err))
		}
		return
	}
	for _, key := range names {
		if ctx.Err() != nil {
			return
		}
		if !strings.HasPrefix(key, prefix+"/") {
			key = path.Join(prefix, path.Base(key))
		}
		raw, err := st.Load(ctx, key)
		if err != nil {
			continue
		}
		if exp, ok := expiryOf(raw); ok && now.Unix() < exp {
			continue
		}
		if writtenSince(ctx, st, key, now.Add(-scanGrace)) {
			continue // perhaps a storage temp file still being written
		}
		if err := st.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			logger.Error("deleting expired "+what, zap.Error(err))
		}
	}
}

// writtenSince reports whether key was modified after t (or cannot be stat'ed, so it
// might be).
func writtenSince(ctx context.Context, st certmagic.Storage, key string, t time.Time) bool {
	info, err := st.Stat(ctx, key)
	return err != nil || info.Modified.After(t)
}

// Interface guards
var _ caddy.Destructor = (*replayStore)(nil)
