package caddyaauth

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/replay"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Replay policies of the aauth handler.
const (
	// ReplayOff accepts a signed request as often as it arrives within its signature
	// window (the created window bounds replays; RFC 9421 §7.2.2).
	ReplayOff = "off"
	// ReplayUnsafe accepts each signed request once when its method is not safe (RFC
	// 9110 §9.2.1: anything but GET, HEAD, OPTIONS and TRACE).
	ReplayUnsafe = "unsafe"
	// ReplayAll accepts each signed request once, whatever its method.
	ReplayAll = "all"
)

// defaultReplay is the policy when none is configured: unsafe methods are single-use on
// auth-token routes, where a request acts under a user's grant; off elsewhere.
func (h *Handler) defaultReplay() string {
	if h.Require == RequireAuthToken {
		return ReplayUnsafe
	}
	return ReplayOff
}

// provisionReplay sets the route's replay policy and, unless it is off, its stores: the
// process's memory store for the app's capacity and the app's shared store.
func (h *Handler) provisionReplay(s *App) error {
	h.replayMode = h.Replay
	if h.replayMode == "" {
		h.replayMode = h.defaultReplay()
	}
	if h.replayMode == ReplayOff {
		return nil
	}
	var err error
	if h.replay, h.releaseReplay, err = sharedReplayStore(s.ReplayCapacity); err != nil {
		return err
	}
	h.sharedReplay = s.replayShared
	return nil
}

// replayPool keeps one replay store per capacity across config reloads, shared by every
// aauth handler that uses one: a request accepted before a reload is still refused
// after it. The store is keyed by the signature base, which names the authority, path
// and method, so one store for all routes and sites is exact.
var replayPool = caddy.NewUsagePool()

type pooledReplay struct{ *replay.Store }

func (pooledReplay) Destruct() error { return nil }

// sharedReplayStore returns the replay store for capacity, kept across reloads. Call
// release (once) in Cleanup.
func sharedReplayStore(capacity int) (*replay.Store, func() error, error) {
	if capacity <= 0 {
		capacity = replay.DefaultCapacity
	}
	key := "replay/capacity=" + strconv.Itoa(capacity)
	v, _, err := replayPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledReplay{replay.New(capacity)}, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("replay store: %w", err)
	}
	var once sync.Once
	release := func() error {
		var err error
		once.Do(func() { _, err = replayPool.Delete(key) })
		return err
	}
	return v.(pooledReplay).Store, release, nil
}

// checkReplay refuses a verified request whose signature base was already accepted
// within its window, when the route's policy covers the method. Call it last, after
// every other check passed, so that only requests that reach the upstream use up their
// signature. It returns an *httpsig.Error for a 401, a 503 when the memory store is
// full, or an *reqverify.UnavailableError (503 temporarily_unavailable) when the shared
// store could not be asked: the request is refused, never let through.
func (h *Handler) checkReplay(w http.ResponseWriter, r *http.Request, method string, res *reqverify.Result) error {
	if h.replay == nil || (h.replayMode == ReplayUnsafe && wire.SafeMethod(method)) {
		return nil
	}
	window := h.verifier.Policy.EffectiveWindow()
	// The signature is acceptable until created + window (RFC 9421 §3.2.1 created,
	// with the route's window); the entry outlives that by a second.
	expires := time.Unix(res.Signature.Created, 0).Add(window + time.Second)
	k := replay.KeyOf(res.Base)
	// Memory first: a replay seen by this process is refused without asking storage.
	err := h.replay.Use(k, expires, h.now())
	switch {
	case err == nil:
		return h.checkSharedReplay(r, k, expires)
	case errors.Is(err, replay.ErrReplay):
		return errReplayed
	default:
		if c := h.logger.Check(zap.WarnLevel, "aauth replay store is full; refusing requests until entries expire"); c != nil {
			c.Write(zap.Int("entries", h.replay.Len()))
		}
		w.Header().Set("Retry-After", "1")
		h.decide(r, http.StatusServiceUnavailable, wire.CodeTemporarilyUnavailable, "the replay store is full")
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
}

var errReplayed = &httpsig.Error{Code: httpsig.CodeInvalidSignature, Msg: "this signed request was already used; sign every request anew"}

// checkSharedReplay records k, fresh in this process's memory, in the shared replay
// store (replay_store shared). When the store cannot be asked the memory entry is
// dropped again, so that the request, which was refused, may be retried once the store
// is back.
func (h *Handler) checkSharedReplay(r *http.Request, k replay.Key, expires time.Time) error {
	if h.sharedReplay == nil || !expires.After(h.now()) {
		return nil
	}
	fresh, err := h.sharedReplay.use(r.Context(), k, expires)
	switch {
	case err != nil:
		h.replay.Forget(k)
		level := zap.DebugLevel
		if h.outages.allow("replay_store cause") {
			level = zap.WarnLevel
		}
		if c := h.logger.Check(level, "aauth shared replay store unavailable; refusing requests with 503"); c != nil {
			c.Write(zap.Error(err))
		}
		return h.sharedReplay.unavailable()
	case !fresh:
		return errReplayed
	}
	return nil
}
