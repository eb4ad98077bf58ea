package caddyaauth

import (
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"path"
	"strconv"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/replay"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
)

// Where the aauth handlers keep their replay entries (the global replay_store option).
const (
	// ReplayStoreLocal keeps them in each process's memory: a signed request sent to two
	// instances behind a load balancer is accepted by each.
	ReplayStoreLocal = "local"
	// ReplayStoreShared also records them in the shared state (the aauth app's state
	// backend, else Caddy's storage), so every instance refuses a request any of them
	// accepted.
	ReplayStoreShared = "shared"
)

// replayPrefix is the storage directory of shared replay entries:
// aauth/replay/<bucket>/<hex key>, bucket being the entry's expiry in Unix minutes.
const replayPrefix = "aauth/replay"

// replayBucket is the width of a bucket of shared replay entries: a sweep deletes whole
// buckets once every entry in them has expired, without reading a single entry.
const replayBucket = 60

// How long a shared replay step may take before the request is answered 503, and how
// often the sweeper deletes expired buckets (a variable for tests).
const sharedReplayTimeout = 5 * time.Second

var replaySweepInterval = time.Minute

// sharedReplay records replay entries where every instance sees them: one
// state.Store.Once per request (RFC 9421 §7.2.2; draft-hardt-aauth, security
// considerations: replay), atomic across all processes sharing the store.
type sharedReplay struct {
	st state.Store
	// sweep is the storage whose expired buckets the sweeper deletes; nil when the store
	// expires entries itself (Redis: SET NX PXAT).
	sweep   certmagic.Storage
	logger  *zap.Logger
	sweeper sweeper
}

// newSharedReplay uses backend when the aauth app has a state backend, else storage:
// its own atomic steps when it has them (the Redis storage), else the locked steps of
// state.Storage, whose per-key entries the sweeper deletes (on a file_system storage
// its marks are in logs it compacts itself; the sweeper deletes entries from before).
func newSharedReplay(backend state.Store, storage certmagic.Storage, logger *zap.Logger) *sharedReplay {
	s := &sharedReplay{logger: logger}
	switch ss, ok := storage.(state.Store); {
	case backend != nil:
		s.st = backend
	case ok:
		s.st = ss
	default:
		s.st, s.sweep = state.NewStorage(storage), storage
	}
	return s
}

// sharedReplayKey is the state key of k for an entry expiring at exp.
func sharedReplayKey(k replay.Key, exp time.Time) string {
	return path.Join(replayPrefix, strconv.FormatInt(exp.Unix()/replayBucket, 10), hex.EncodeToString(k[:]))
}

// use records k until exp and reports whether this was its first use across every
// instance. An error means the step did not happen: the caller refuses the request.
func (s *sharedReplay) use(ctx context.Context, k replay.Key, exp time.Time) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, sharedReplayTimeout)
	defer cancel()
	return s.st.Once(ctx, sharedReplayKey(k, exp), exp)
}

// unavailable is the 503 answer to a request whose replay entry could not be recorded.
func (s *sharedReplay) unavailable() *reqverify.UnavailableError {
	return &reqverify.UnavailableError{
		Msg:        "the gateway's shared replay store is unavailable; try again later",
		Issuer:     "replay_store",
		RetryAfter: time.Second,
	}
}

// start runs the sweeper (storage only) until stop.
func (s *sharedReplay) start() {
	if s == nil || s.sweep == nil {
		return
	}
	s.sweeper.start(replaySweepInterval, s.sweepBuckets)
}

// stop ends the sweeper.
func (s *sharedReplay) stop() {
	if s != nil {
		s.sweeper.stop()
	}
}

// sweepBuckets deletes the buckets whose every entry expired more than a bucket ago (the
// margin covers clocks a little apart between instances). Any instance may sweep; a
// bucket deleted twice is fine.
func (s *sharedReplay) sweepBuckets(ctx context.Context, now time.Time) {
	names, err := s.sweep.List(ctx, replayPrefix, false)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.logger.Error("listing replay buckets", zap.Error(err))
		}
		return
	}
	last := now.Unix()/replayBucket - 2 // buckets up to here ended a bucket ago or more
	for _, name := range names {
		b, err := strconv.ParseInt(path.Base(name), 10, 64)
		if err != nil || b > last || ctx.Err() != nil {
			continue
		}
		key := path.Join(replayPrefix, path.Base(name))
		if err := s.sweep.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.logger.Error("deleting expired replay bucket", zap.String("key", key), zap.Error(err))
		}
	}
}
