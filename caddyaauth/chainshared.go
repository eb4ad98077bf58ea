package caddyaauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/ids"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
)

// Where chained requests live in the shared state: aauth/chain/req/<id> holds the
// storedChain, aauth/chain/code/<sha256 of our code> the id its code stands for.
const (
	chainReqPrefix  = "aauth/chain/req"
	chainCodePrefix = "aauth/chain/code"
)

// chainStepTimeout bounds one step on the shared state; chainLease is how long an
// instance may hold a record while it polls downstream (the longest poll, maxChainWait +
// 1 s, and the replay's start, with a margin), after which another instance may take it
// over (the holder died).
const (
	chainStepTimeout = 5 * time.Second
	chainLease       = maxChainWait + 30*time.Second
)

var chainSweepInterval = time.Minute

// Outcomes of a claim on a shared record.
var (
	errChainGone = errors.New("aauth: no such pending request")
	errChainBusy = errors.New("aauth: another poll of the pending request is in progress")
)

// sharedChains keeps the chained requests of every instance in the shared state (the
// aauth app's state backend, else Caddy's storage), so that any instance behind the load
// balancer answers the pending URL and the interaction code. Each move of a record goes
// through state.Store.Update, atomic across the instances: one instance at a time holds
// a record (a lease) while it polls downstream, and only the holder deletes it, once,
// with the terminal answer.
type sharedChains struct {
	st     state.Store
	list   certmagic.Storage // where the sweeper lists the records
	logger *zap.Logger

	mu    sync.Mutex
	local map[string]time.Time // records this process started, for the maxChains bound

	sweeper sweeper
}

func newSharedChains(backend state.Store, storage certmagic.Storage, list certmagic.Storage, logger *zap.Logger) *sharedChains {
	st := backend
	if st == nil {
		st = stateOf(storage)
	}
	return &sharedChains{st: st, list: list, logger: logger}
}

func chainReqKey(id string) string { return path.Join(chainReqPrefix, id) }

func chainCodeKey(code string) string {
	sum := sha256.Sum256([]byte(code))
	return path.Join(chainCodePrefix, hex.EncodeToString(sum[:]))
}

// chainCodeRecord is what a code key holds.
type chainCodeRecord struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// reserve counts a record this process starts against maxChains.
func (s *sharedChains) reserve(id string, exp, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local == nil {
		s.local = map[string]time.Time{}
	}
	for k, e := range s.local {
		if !now.Before(e) {
			delete(s.local, k)
		}
	}
	if len(s.local) >= maxChains {
		return errTooManyChains
	}
	s.local[id] = exp
	return nil
}

// add stores sc under a fresh id and a fresh code (sc.ID and sc.Code are set).
func (s *sharedChains) add(ctx context.Context, sc *storedChain, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, chainStepTimeout)
	defer cancel()
	sc.ID = ids.NewRandomID(chainIDBytes)
	if err := s.reserve(sc.ID, sc.Expires, now); err != nil {
		return err
	}
	for {
		sc.Code = ids.NewCode()
		taken := false
		val, _ := json.Marshal(chainCodeRecord{ID: sc.ID, Expires: sc.Expires})
		_, err := s.st.Update(ctx, chainCodeKey(sc.Code), func(old []byte) ([]byte, error) {
			var cur chainCodeRecord
			if taken = old != nil && json.Unmarshal(old, &cur) == nil && now.Before(cur.Expires); taken {
				return old, nil
			}
			return val, nil
		})
		if err != nil {
			return err
		}
		if !taken {
			break
		}
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	_, err = s.st.Update(ctx, chainReqKey(sc.ID), func([]byte) ([]byte, error) { return b, nil })
	return err
}

// get reads the record with that id (nil, errChainGone when there is none). It is for
// the answers that change nothing; a move goes through claim.
func (s *sharedChains) get(ctx context.Context, id string) (*storedChain, error) {
	if !ids.ValidRandomID(id, chainIDBytes) {
		return nil, errChainGone
	}
	ctx, cancel := context.WithTimeout(ctx, chainStepTimeout)
	defer cancel()
	b, err := s.st.Load(ctx, chainReqKey(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errChainGone
	}
	if err != nil {
		return nil, err
	}
	var sc storedChain
	if err := json.Unmarshal(b, &sc); err != nil || sc.ID != id {
		return nil, errChainGone
	}
	return &sc, nil
}

// byUserCode reads the live record whose code the person typed.
func (s *sharedChains) byUserCode(ctx context.Context, typed string, now time.Time) (*storedChain, error) {
	code, ok := ids.NormalizeCode(typed)
	if !ok {
		return nil, errChainGone
	}
	lctx, cancel := context.WithTimeout(ctx, chainStepTimeout)
	b, err := s.st.Load(lctx, chainCodeKey(code))
	cancel()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errChainGone
	}
	if err != nil {
		return nil, err
	}
	var cr chainCodeRecord
	if json.Unmarshal(b, &cr) != nil || !now.Before(cr.Expires) {
		return nil, errChainGone
	}
	sc, err := s.get(ctx, cr.ID)
	if err != nil || sc.Code != code || !now.Before(sc.Expires) {
		return nil, errChainGone
	}
	return sc, nil
}

// claim takes the lease on record id for holder: errChainGone when the record is gone,
// errChainBusy while another poll holds it.
func (s *sharedChains) claim(ctx context.Context, id, holder string, now time.Time) (*storedChain, error) {
	ctx, cancel := context.WithTimeout(ctx, chainStepTimeout)
	defer cancel()
	var sc storedChain
	_, err := s.st.Update(ctx, chainReqKey(id), func(old []byte) ([]byte, error) {
		sc = storedChain{}
		if old == nil || json.Unmarshal(old, &sc) != nil {
			return nil, errChainGone
		}
		if sc.Holder != "" && now.Before(sc.Until) {
			return nil, errChainBusy
		}
		sc.Holder, sc.Until = holder, now.Add(chainLease)
		return json.Marshal(&sc)
	})
	if err != nil {
		return nil, err
	}
	return &sc, nil
}

// release hands the record back for the next poll (still waiting downstream).
func (s *sharedChains) release(ctx context.Context, id, holder string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), chainStepTimeout)
	defer cancel()
	_, err := s.st.Update(ctx, chainReqKey(id), func(old []byte) ([]byte, error) {
		var sc storedChain
		if old == nil || json.Unmarshal(old, &sc) != nil || sc.Holder != holder {
			return nil, errChainGone
		}
		sc.Holder, sc.Until = "", time.Time{}
		return json.Marshal(&sc)
	})
	return err
}

// finish deletes the record held by holder, and its code: its pending URL answers 404
// from now on. errChainGone when holder no longer holds it (its lease ran out and
// another instance took the record over).
func (s *sharedChains) finish(ctx context.Context, sc *storedChain, holder string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), chainStepTimeout)
	defer cancel()
	_, err := s.st.Update(ctx, chainReqKey(sc.ID), func(old []byte) ([]byte, error) {
		var cur storedChain
		if old == nil || json.Unmarshal(old, &cur) != nil || cur.Holder != holder {
			return nil, errChainGone
		}
		return nil, nil
	})
	if err != nil {
		return err
	}
	s.forget(ctx, sc)
	return nil
}

// forget drops the code of a deleted record and its count in this process.
func (s *sharedChains) forget(ctx context.Context, sc *storedChain) {
	s.mu.Lock()
	delete(s.local, sc.ID)
	s.mu.Unlock()
	_, err := s.st.Update(ctx, chainCodeKey(sc.Code), func(old []byte) ([]byte, error) {
		var cr chainCodeRecord
		if old != nil && json.Unmarshal(old, &cr) == nil && cr.ID != sc.ID {
			return old, nil // the code was taken again by another record
		}
		return nil, nil
	})
	if err != nil {
		s.logger.Warn("deleting the code of a finished chained request (the sweeper retries)", zap.Error(err))
	}
}
