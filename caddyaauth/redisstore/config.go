// Package redisstore connects caddy-aauth to a Redis server: the Caddy storage module
// caddy.storage.redis (certificates, signing keys, grants) and the client settings the
// aauth app's redis state backend shares with it. It speaks the Redis protocol through
// github.com/redis/go-redis/v9.
package redisstore

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Defaults of the client settings.
const (
	DefaultAddress     = "127.0.0.1:6379"
	DefaultKeyPrefix   = "caddy"
	DefaultDialTimeout = 5 * time.Second
	DefaultReadTimeout = 3 * time.Second
	DefaultLockTTL     = 10 * time.Second
	maxDB              = 1 << 16
	minLockTTL         = time.Second
	maxKeyPrefixLength = 256
)

func init() {
	// go-redis logs connection trouble (a refused dial, a dropped connection) through a
	// package-wide logger that writes to stderr; send it to Caddy's log instead. At
	// DEBUG: the failures that matter reach the caller as errors, which log them.
	redis.SetLogger(caddyLogger{})
}

type caddyLogger struct{}

func (caddyLogger) Printf(_ context.Context, format string, v ...any) {
	if c := caddy.Log().Named("redis").Check(zap.DebugLevel, "go-redis"); c != nil {
		c.Write(zap.String("detail", fmt.Sprintf(format, v...)))
	}
}

// Config is how to reach one Redis server. The storage module and the aauth app's redis
// state backend use the same fields; two modules with the same settings share one client
// (one connection pool), kept across config reloads.
//
// Secrets (password) may be written as {env.NAME} or {file.path} placeholders; they are
// expanded when the module is provisioned, so the adapted JSON holds no secret.
type Config struct {
	// Address is host:port of the Redis server. Default 127.0.0.1:6379.
	Address string `json:"address,omitempty"`
	// Username for Redis ACLs (AUTH username password). Empty: the default user.
	Username string `json:"username,omitempty"`
	// Password for AUTH. Accepts {env.*} and {file.*} placeholders.
	Password string `json:"password,omitempty"`
	// DB is the logical database number (SELECT). Default 0.
	DB int `json:"db,omitempty"`
	// TLS turns on TLS to the server (verified against the system roots).
	TLS bool `json:"tls,omitempty"`
	// TLSServerName is the name the server's certificate must carry; default the host
	// of Address. Only with tls.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// KeyPrefix starts every key this module writes, followed by ':'. Default "caddy".
	// Use different prefixes to keep several clusters apart in one database.
	KeyPrefix string `json:"key_prefix,omitempty"`
	// DialTimeout bounds connecting to the server. Default 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// ReadTimeout bounds each command's reply (and write). Default 3s.
	ReadTimeout caddy.Duration `json:"read_timeout,omitempty"`
}

// Validate checks the settings without contacting the server.
func (c *Config) Validate() error {
	if c.DB < 0 || c.DB >= maxDB {
		return fmt.Errorf("redis db: want 0..%d, got %d", maxDB-1, c.DB)
	}
	if c.TLSServerName != "" && !c.TLS {
		return errors.New("redis tls_server_name needs tls on")
	}
	if len(c.KeyPrefix) > maxKeyPrefixLength {
		return fmt.Errorf("redis key_prefix: at most %d bytes", maxKeyPrefixLength)
	}
	if c.DialTimeout < 0 || c.ReadTimeout < 0 {
		return errors.New("redis dial_timeout and read_timeout must not be negative")
	}
	return nil
}

// resolved returns a copy with defaults filled in and placeholders expanded.
func (c Config) resolved() Config {
	repl := caddy.NewReplacer()
	c.Address = repl.ReplaceAll(c.Address, "")
	c.Username = repl.ReplaceAll(c.Username, "")
	c.Password = repl.ReplaceAll(c.Password, "")
	c.TLSServerName = repl.ReplaceAll(c.TLSServerName, "")
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = caddy.Duration(DefaultDialTimeout)
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = caddy.Duration(DefaultReadTimeout)
	}
	return c
}

// options turns resolved settings into go-redis options.
func (c Config) options() *redis.Options {
	o := &redis.Options{
		Addr:         c.Address,
		Username:     c.Username,
		Password:     c.Password,
		DB:           c.DB,
		DialTimeout:  time.Duration(c.DialTimeout),
		ReadTimeout:  time.Duration(c.ReadTimeout),
		WriteTimeout: time.Duration(c.ReadTimeout),
		// One try per command: callers fail closed and decide about retrying; a
		// retried write could apply twice.
		MaxRetries: -1,
		// One dial per attempt, not go-redis's default of 5 tries 100ms apart: while
		// the server is down a request should learn it at once and answer 503.
		DialerRetries: 1,
		// Identify ourselves only through the protocol handshake go-redis already does.
		DisableIdentity: true,
	}
	if c.TLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	}
	return o
}

// poolKey identifies a client by every setting that changes the connection (a digest,
// so the pool keeps no password in its keys).
func (c Config) poolKey() string {
	b, _ := json.Marshal(struct {
		A, U, P, S string
		D          int
		T          bool
		DT, RT     caddy.Duration
	}{c.Address, c.Username, c.Password, c.TLSServerName, c.DB, c.TLS, c.DialTimeout, c.ReadTimeout})
	sum := sha256.Sum256(b)
	return "redis/" + hex.EncodeToString(sum[:])
}

// Client is a Redis connection pool shared by every module with the same settings, and
// the locks this process holds through it.
type Client struct {
	*redis.Client

	mu    sync.Mutex
	locks map[string]*heldLock // by full Redis key
}

// NewClient makes a client of its own (not pooled); tests use it to act as two
// processes. Close it when done.
func NewClient(c Config) *Client {
	return &Client{Client: redis.NewClient(c.resolved().options()), locks: map[string]*heldLock{}}
}

// Destruct implements caddy.Destructor: the last module using the client closed it.
func (c *Client) Destruct() error {
	c.mu.Lock()
	for _, l := range c.locks {
		l.stop()
	}
	c.locks = map[string]*heldLock{}
	c.mu.Unlock()
	return c.Close()
}

var clientPool = caddy.NewUsagePool()

// Shared returns the client for c's settings (resolved: defaults, placeholders), shared
// across modules and config reloads, and the function that releases this reference
// (call it once, in Cleanup). It does not contact the server.
func Shared(c Config) (client *Client, resolved Config, release func() error, err error) {
	r := c.resolved()
	key := r.poolKey()
	v, _, err := clientPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return &Client{Client: redis.NewClient(r.options()), locks: map[string]*heldLock{}}, nil
	})
	if err != nil {
		return nil, Config{}, nil, fmt.Errorf("redis client: %w", err)
	}
	var once sync.Once
	release = func() error {
		var err error
		once.Do(func() { _, err = clientPool.Delete(key) })
		return err
	}
	return v.(*Client), r, release, nil
}

// UnmarshalBlock reads the settings of a `redis` block: the tokens before the block
// have been consumed, and this reads its subdirectives up to the closing brace. extra,
// when not nil, is offered each subdirective first (the dispenser on its name) and
// reports whether it took it; the caller adds its own settings that way.
//
//	{
//	    address         <host:port>
//	    username        <name>
//	    password        <secret|{env.NAME}|{file.path}>
//	    db              <n>
//	    tls             [on|off]
//	    tls_server_name <name>
//	    key_prefix      <prefix>
//	    dial_timeout    <duration>
//	    read_timeout    <duration>
//	}
func (c *Config) UnmarshalBlock(d *caddyfile.Dispenser, extra func(name string) (bool, error)) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("redis: %s already specified", name)
		}
		seen[name] = true
		if extra != nil {
			handled, err := extra(name)
			if err != nil {
				return err
			}
			if handled {
				continue
			}
		}
		if err := c.unmarshalOption(d, name); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) unmarshalOption(d *caddyfile.Dispenser, name string) error {
	if name == "tls" {
		args := d.RemainingArgs()
		switch {
		case len(args) == 0 || (len(args) == 1 && args[0] == "on"):
			c.TLS = true
		case len(args) == 1 && args[0] == "off":
			c.TLS = false
		default:
			return d.Errf("redis tls: want on or off")
		}
		return nil
	}
	var val string
	if !d.Args(&val) || d.NextArg() {
		return d.ArgErr()
	}
	switch name {
	case "address":
		c.Address = val
	case "username":
		c.Username = val
	case "password":
		c.Password = val
	case "tls_server_name":
		c.TLSServerName = val
	case "key_prefix":
		c.KeyPrefix = val
	case "db":
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return d.Errf("redis db: want a database number, got %q", val)
		}
		c.DB = n
	case "dial_timeout", "read_timeout":
		dur, err := caddy.ParseDuration(val)
		if err != nil || dur <= 0 {
			return d.Errf("redis %s: want a positive duration, got %q", name, val)
		}
		if name == "dial_timeout" {
			c.DialTimeout = caddy.Duration(dur)
		} else {
			c.ReadTimeout = caddy.Duration(dur)
		}
	default:
		return d.Errf("redis: unrecognized subdirective '%s'", name)
	}
	return nil
}
