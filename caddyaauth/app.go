package caddyaauth

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
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
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "aauth", New: func() caddy.Module { return new(App) }}
}

// Provision warns loudly when dev mode is on.
func (a *App) Provision(ctx caddy.Context) error {
	if a.Dev {
		ctx.Logger().Warn("aauth dev mode is ON: http:// and loopback/private identifiers are accepted; do not use in production")
	}
	return nil
}

// Start implements caddy.App.
func (a *App) Start() error { return nil }

// Stop implements caddy.App.
func (a *App) Stop() error { return nil }

// settings returns the app's switches, or the defaults when no app is configured.
func settings(ctx caddy.Context) App {
	v, err := ctx.AppIfConfigured("aauth")
	if err != nil || v == nil {
		return App{}
	}
	if a, ok := v.(*App); ok {
		return *a
	}
	return App{}
}

// discoveryPool keeps one discovery client (and its cache) per setting across config
// reloads, so a reload does not refetch every agent's keys.
var discoveryPool = caddy.NewUsagePool()

type pooledClient struct{ *discovery.Client }

func (p pooledClient) Destruct() error { p.Close(); return nil }

func discoveryKey(s App) string {
	return "discovery/dev=" + strconv.FormatBool(s.Dev) + "/timeout=" + time.Duration(s.FetchTimeout).String()
}

// loadDiscovery returns the shared client for s; release it with discoveryPool.Delete(key).
func loadDiscovery(s App, logger *zap.Logger) (*discovery.Client, string, error) {
	key := discoveryKey(s)
	v, _, err := discoveryPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledClient{discovery.New(discovery.Config{
			Dev:     s.Dev,
			Timeout: time.Duration(s.FetchTimeout),
			Logger:  logger.Named("discovery"),
		})}, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("discovery client: %w", err)
	}
	return v.(pooledClient).Client, key, nil
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)

func unmarshalJSON(b []byte, v any) error { return json.Unmarshal(b, v) }
