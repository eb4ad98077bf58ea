package caddyaauth

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
)

// stateOf is the state.Store of a storage: its own atomic steps when it has them (the
// Redis storage), else the locked steps of state.Storage.
func stateOf(storage certmagic.Storage) state.Store {
	if ss, ok := storage.(state.Store); ok {
		return ss
	}
	return state.NewStorage(storage)
}

// start runs the sweeper of expired records until stop: a record nobody polled to its
// end is deleted once it expired (chainLifetime at most) and no poll holds it.
func (s *sharedChains) start() {
	if s == nil || s.list == nil {
		return
	}
	s.sweeper.start(chainSweepInterval, s.sweep)
}

// stop ends the sweeper.
func (s *sharedChains) stop() {
	if s != nil {
		s.sweeper.stop()
	}
}

// sweep deletes the expired records and codes. Any instance may sweep: each deletion is
// an Update that reads the record again, so a record still alive (or held by a poll) is
// kept. What cannot be read as a record (a file being written) is left alone.
func (s *sharedChains) sweep(ctx context.Context, now time.Time) {
	s.sweepPrefix(ctx, chainReqPrefix, func(b []byte) bool {
		var sc storedChain
		return json.Unmarshal(b, &sc) == nil && !now.Before(sc.Expires) && (sc.Holder == "" || !now.Before(sc.Until))
	})
	s.sweepPrefix(ctx, chainCodePrefix, func(b []byte) bool {
		var cr chainCodeRecord
		return json.Unmarshal(b, &cr) == nil && !now.Before(cr.Expires)
	})
}

// sweepPrefix deletes the entries under prefix that dead reports dead.
func (s *sharedChains) sweepPrefix(ctx context.Context, prefix string, dead func([]byte) bool) {
	names, err := s.list.List(ctx, prefix, false)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.logger.Error("listing chained requests", zap.Error(err))
		}
		return
	}
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		key := path.Join(prefix, path.Base(name))
		sctx, cancel := context.WithTimeout(ctx, chainStepTimeout)
		_, err := s.st.Update(sctx, key, func(old []byte) ([]byte, error) {
			if old != nil && dead(old) {
				return nil, nil
			}
			return old, nil
		})
		cancel()
		if err != nil {
			s.logger.Error("deleting an expired chained request", zap.String("key", key), zap.Error(err))
		}
	}
}
