package authserver

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
)

// globalSettings returns the global `aauth` app's switches (dev, fetch timeout), or the
// defaults when the app is not configured.
func globalSettings(ctx caddy.Context) (caddyaauth.App, error) {
	v, err := ctx.AppIfConfigured("aauth")
	if errors.Is(err, caddy.ErrNotConfigured) || (err == nil && v == nil) {
		return caddyaauth.App{}, nil
	}
	if err != nil {
		return caddyaauth.App{}, fmt.Errorf("loading the aauth app: %w", err)
	}
	a, ok := v.(*caddyaauth.App)
	if !ok {
		return caddyaauth.App{}, fmt.Errorf("the aauth app has unexpected type %T", v)
	}
	return *a, nil
}

// discoveryPool keeps one discovery client (and its cache of resource and agent metadata
// and JWKS) per setting across config reloads.
var discoveryPool = caddy.NewUsagePool()

type pooledDiscovery struct{ *discovery.Client }

func (p pooledDiscovery) Destruct() error { p.Close(); return nil }

func discoveryKey(s caddyaauth.App) string {
	return "discovery/dev=" + strconv.FormatBool(s.Dev) + "/timeout=" + time.Duration(s.FetchTimeout).String()
}

// loadDiscovery returns the shared client for s and its pool key (release it with
// discoveryPool.Delete(key)).
func loadDiscovery(s caddyaauth.App, logger *zap.Logger) (*discovery.Client, string, error) {
	key := discoveryKey(s)
	v, _, err := discoveryPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledDiscovery{discovery.New(discovery.Config{
			Dev:     s.Dev,
			Timeout: time.Duration(s.FetchTimeout),
			Logger:  logger.Named("discovery"),
		})}, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("discovery client: %w", err)
	}
	return v.(pooledDiscovery).Client, key, nil
}
