package caddyaauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the optional global `aauth` app: switches shared by every aauth handler and
// auth server in the config. Without it the defaults (strict https identifiers) apply.
type App struct {
	// Dev allows http:// identifiers and loopback or private hosts with ports, for local
	// demos and tests only. Never enable it in production: it lets agents point the
	// gateway at internal addresses.
	Dev bool `json:"dev,omitempty"`

	// FetchTimeout bounds each metadata or JWKS fetch (default 5s).
	FetchTimeout caddy.Duration `json:"fetch_timeout,omitempty"`

	// MaxTokenLifetime is the default bound on agent and auth token lifetimes for every
	// aauth handler that sets none (exp - iat and exp - now). Default 24h.
	MaxTokenLifetime caddy.Duration `json:"max_token_lifetime,omitempty"`

	// ReplayCapacity bounds the replay store shared by the aauth handlers, in entries
	// (default 1048576, about 70 MB when full). A full store refuses requests that
	// need it with 503 until entries expire; it never forgets a live entry.
	ReplayCapacity int `json:"replay_capacity,omitempty"`

	// ReplayStore is where the aauth handlers record the signed requests they accepted
	// (their replay policy): "local" (each process's memory) or "shared" (also the
	// state backend, else Caddy's storage, so that instances behind one load balancer
	// refuse a request any of them accepted). Default "shared" when State is set, else
	// "local". Memory stays the first filter either way. The requests waiting for a
	// downstream consent (interaction chaining) follow the same choice: with "shared"
	// they live in the shared state, so any instance answers their pending URL and code.
	ReplayStore string `json:"replay_store,omitempty"`

	// State is where the auth server keeps what must hold across every instance: the
	// single-use marks (resource-token jti, interaction codes), pending requests and
	// their decisions, and the token rate limit. A module in the aauth.state namespace,
	// e.g. {"backend": "redis", "address": "…"}; without one, Caddy's storage with its
	// locks (see the "Running a cluster" section of the README).
	StateRaw json.RawMessage `json:"state,omitempty" caddy:"namespace=aauth.state inline_key=backend"`

	// ReadyMessage, when set, is printed as one line on standard output once the config
	// has started and its servers accept connections (Caddy's "started" event): on
	// `caddy run` and after each reload, never under `caddy validate`. The demo uses it
	// to tell the user the next command to try.
	ReadyMessage string `json:"ready_message,omitempty"`

	state StateBackend // loaded from StateRaw; nil: Caddy's storage

	replayShared *sharedReplay // nil: replay_store local
	chainShared  *sharedChains // nil: chained requests in memory (replay_store local)

	// What this config's handlers registered while they were provisioned: the guard in
	// front of each HTTP server that has aauth handlers, and the auth-token handlers of
	// each resource identifier (so one resource's routes are described together), and
	// the work they left for Start.
	reg *registry

	// The discovery client of this config's settings, shared across reloads through
	// discoveryPool; released in Cleanup.
	discovery        *discovery.Client
	releaseDiscovery func() error

	ctx caddy.Context // for Start
}

type registry struct {
	mu        sync.Mutex
	guards    map[*caddyhttp.Server]*serverGuard
	resources map[string][]*Handler
	onStart   []func(context.Context) error // see OnStart
	egress    *egressState                  // handles, downstream tokens, chains; see egressState
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "aauth", New: func() caddy.Module { return new(App) }}
}

// minReplayCapacity is the smallest replay_capacity accepted.
const minReplayCapacity = 1024

// Provision takes a reference on the shared discovery client and warns loudly when dev
// mode is on.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.reg = &registry{guards: map[*caddyhttp.Server]*serverGuard{}, resources: map[string][]*Handler{}}
	if a.Dev {
		ctx.Logger().Warn("aauth dev mode is ON: http:// and loopback/private identifiers are accepted; do not use in production")
	}
	client, release, err := sharedDiscovery(a.Dev, time.Duration(a.FetchTimeout))
	if err != nil {
		return err
	}
	a.discovery, a.releaseDiscovery = client, release
	if err := a.provisionReady(ctx); err != nil {
		return err
	}
	if a.StateRaw != nil {
		mod, err := ctx.LoadModule(a, "StateRaw")
		if err != nil {
			return fmt.Errorf("loading the aauth state backend: %w", err)
		}
		st, ok := mod.(StateBackend)
		if !ok {
			return fmt.Errorf("aauth state backend %T is not a certmagic.Storage and state.Store", mod)
		}
		a.state = st
	}
	if a.replayStore() == ReplayStoreShared {
		var backend state.Store
		if a.state != nil {
			backend = a.state
		}
		a.replayShared = newSharedReplay(backend, ctx.Storage(), ctx.Logger().Named("replay"))
		// Interaction chaining follows the same decision: a cluster that shares replay
		// entries shares the requests waiting for a downstream consent too.
		var list certmagic.Storage = ctx.Storage()
		if a.state != nil {
			list = a.state
		}
		a.chainShared = newSharedChains(backend, ctx.Storage(), list, ctx.Logger().Named("chain"))
	}
	return nil
}

// replayStore is the effective replay_store: as configured, else shared when a state
// backend is configured (StateRaw before Provision; loading the module clears it), else
// local.
func (a *App) replayStore() string {
	switch {
	case a.ReplayStore != "":
		return a.ReplayStore
	case a.StateRaw != nil || a.state != nil:
		return ReplayStoreShared
	default:
		return ReplayStoreLocal
	}
}

// StateBackend is a module of the aauth.state namespace: a certmagic.Storage (for the
// records the auth server lists and sweeps) whose state.Store steps are atomic across
// every instance using it.
type StateBackend interface {
	certmagic.Storage
	state.Store
}

// State returns the configured state backend, or nil when the auth server keeps its
// state in Caddy's storage.
func (a *App) State() StateBackend { return a.state }

// Validate checks the switches.
func (a *App) Validate() error {
	if a.FetchTimeout < 0 {
		return errors.New("fetch_timeout must not be negative")
	}
	if lt := time.Duration(a.MaxTokenLifetime); lt < 0 || (lt != 0 && lt < time.Second) {
		return fmt.Errorf("max_token_lifetime: want a duration of at least 1s, got %q", lt.String())
	}
	if n := a.ReplayCapacity; n < 0 || (n != 0 && n < minReplayCapacity) {
		return fmt.Errorf("replay_capacity: want a whole number of entries of at least %d, got %q", minReplayCapacity, strconv.Itoa(n))
	}
	switch a.ReplayStore {
	case "", ReplayStoreLocal, ReplayStoreShared:
	default:
		return fmt.Errorf("replay_store: unknown store %q (want local or shared)", a.ReplayStore)
	}
	return validateReadyMessage(a.ReadyMessage)
}

// Start runs the work handlers registered with OnStart: loading or generating signing
// keys, which `caddy validate` (which provisions but never starts) must not write.
func (a *App) Start() error {
	a.reg.mu.Lock()
	fns := a.reg.onStart
	a.reg.onStart = nil
	a.reg.mu.Unlock()
	var ctx context.Context = context.Background()
	if a.ctx.Context != nil {
		ctx = a.ctx
	}
	for _, fn := range fns {
		if err := fn(ctx); err != nil {
			return err
		}
	}
	a.replayShared.start()
	a.chainShared.start()
	return nil
}

// Stop ends the sweepers of the shared replay entries and chained requests.
func (a *App) Stop() error {
	a.replayShared.stop()
	a.chainShared.stop()
	return nil
}

// Cleanup releases the shared discovery client.
func (a *App) Cleanup() error {
	if a.releaseDiscovery == nil {
		return nil
	}
	err := a.releaseDiscovery()
	a.releaseDiscovery = nil
	return err
}

// OnStart registers fn to run when the config starts (caddy run, a reload), and never
// under `caddy validate`. Handlers use it for work that writes storage, such as creating
// signing keys; fn must be safe to repeat lazily, because a request may arrive before
// the app is started.
func (a *App) OnStart(fn func(context.Context) error) {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	a.reg.onStart = append(a.reg.onStart, fn)
}

// Discovery is the metadata and JWKS client of this config's settings, shared by its
// gateways and auth servers and kept across reloads.
func (a *App) Discovery() *discovery.Client { return a.discovery }

// LoadApp returns this config's aauth app, creating it with the defaults when the config
// has none, so handlers can read its settings and register with it.
func LoadApp(ctx caddy.Context) (*App, error) {
	v, err := ctx.App("aauth")
	if err != nil {
		return nil, fmt.Errorf("loading the aauth app: %w", err)
	}
	a, ok := v.(*App)
	if !ok {
		return nil, fmt.Errorf("the aauth app has unexpected type %T", v)
	}
	return a, nil
}

// registerResource lists h among the auth-token handlers of its resource.
func (a *App) registerResource(h *Handler) {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	a.reg.resources[h.Resource] = append(a.reg.resources[h.Resource], h)
}

// resourceHandlers returns the auth-token handlers of resource in this config.
func (a *App) resourceHandlers(resource string) []*Handler {
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	return slices.Clone(a.reg.resources[resource])
}

// wellKnownHandler picks, among the resources a server protects, the one whose
// identifier's authority (or a configured authority of its routes) is the request's, and
// returns its first handler; nil when none is.
func (a *App) wellKnownHandler(resources []string, r *http.Request) *Handler {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	got := httpsig.Authority(scheme, r.Host)
	for _, id := range resources {
		hs := a.resourceHandlers(id)
		if len(hs) == 0 {
			continue
		}
		if u, err := url.Parse(id); err == nil && httpsig.Authority(u.Scheme, u.Host) == got {
			return hs[0]
		}
		for _, h := range hs {
			if slices.Contains(h.authorities, got) {
				return hs[0]
			}
		}
	}
	return nil
}

// discoveryPool keeps one discovery client (and its cache of metadata and JWKS) per
// setting across config reloads, shared by gateways and auth servers alike.
var discoveryPool = caddy.NewUsagePool()

type pooledClient struct{ *discovery.Client }

func (p pooledClient) Destruct() error { p.Close(); return nil }

// sharedDiscovery returns the discovery client for the settings, kept across reloads.
// Call release (once) in Cleanup.
func sharedDiscovery(dev bool, timeout time.Duration) (client *discovery.Client, release func() error, err error) {
	key := "discovery/dev=" + strconv.FormatBool(dev) + "/timeout=" + timeout.String()
	v, _, err := discoveryPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledClient{discovery.New(discovery.Config{
			Dev:     dev,
			Timeout: timeout,
			// Not the caller's logger: the client outlives the config that created it.
			Logger: caddy.Log().Named("aauth.discovery"),
		})}, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("discovery client: %w", err)
	}
	var once sync.Once
	release = func() error {
		var err error
		once.Do(func() { _, err = discoveryPool.Delete(key) })
		return err
	}
	return v.(pooledClient).Client, release, nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

func unmarshalJSON(b []byte, v any) error { return json.Unmarshal(b, v) }
