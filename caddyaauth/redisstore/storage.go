package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Storage{})
}

// Storage is the Caddy storage module caddy.storage.redis: certmagic.Storage on a Redis
// server, so several Caddy instances share certificates, signing keys and grants.
//
// Layout, under KeyPrefix (default "caddy"):
//
//	<prefix>:data:<key>   a hash {value, modified (Unix ms)} per stored key
//	<prefix>:index        a sorted set of every stored key (all scores 0, ordered by
//	                      bytes), which answers List, Exists and directory deletes
//	<prefix>:lock:<name>  a lock: a random token, with an expiry (SET NX PX)
//
// Each write changes the hash and the index in one MULTI/EXEC transaction. Keys are
// slash-separated paths as in certmagic's FileStorage: "a/b" is a directory when "a/b/c"
// is stored. It needs one Redis server (or a primary with replicas), not Redis Cluster:
// a transaction spans the hash and the index.
type Storage struct {
	Config

	// LockTTL is how long a lock lives without renewal: the holder renews it every
	// third of it while it holds the lock, so a lock outlives its holder (a crash, a
	// network split) by at most this long. Default 10s.
	LockTTL caddy.Duration `json:"lock_ttl,omitempty"`

	client  *Client
	release func() error
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Storage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "caddy.storage.redis", New: func() caddy.Module { return new(Storage) }}
}

// Provision takes a reference on the shared client of these settings. It does not
// contact the server: a storage that cannot be reached fails its operations, not the
// config load.
func (s *Storage) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	client, resolved, release, err := Shared(s.Config)
	if err != nil {
		return err
	}
	s.client, s.release, s.Config = client, release, resolved
	if s.LockTTL == 0 {
		s.LockTTL = caddy.Duration(DefaultLockTTL)
	}
	return nil
}

// Validate checks the settings.
func (s *Storage) Validate() error {
	if err := s.Config.Validate(); err != nil {
		return err
	}
	if ttl := time.Duration(s.LockTTL); ttl != 0 && ttl < minLockTTL {
		return fmt.Errorf("redis lock_ttl: want at least %s, got %s", minLockTTL, ttl)
	}
	return nil
}

// Cleanup releases the shared client (the last user closes it).
func (s *Storage) Cleanup() error {
	if s.release == nil {
		return nil
	}
	err := s.release()
	s.release = nil
	return err
}

// CertMagicStorage implements caddy.StorageConverter.
func (s *Storage) CertMagicStorage() (certmagic.Storage, error) { return s, nil }

// New returns a storage on client (not pooled), for tests and programs that manage
// the client themselves.
func New(client *Client, c Config, lockTTL time.Duration) *Storage {
	r := c.resolved()
	if lockTTL <= 0 {
		lockTTL = DefaultLockTTL
	}
	return &Storage{Config: r, LockTTL: caddy.Duration(lockTTL), client: client, logger: zap.NewNop()}
}

// UnmarshalCaddyfile reads the global option
//
//	storage redis {
//	    address ...    (and the other settings of Config.UnmarshalBlock)
//	    lock_ttl <duration>
//	}
func (s *Storage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return s.Config.UnmarshalBlock(d, func(name string) (bool, error) {
		if name != "lock_ttl" {
			return false, nil
		}
		var v string
		if !d.Args(&v) || d.NextArg() {
			return true, d.ArgErr()
		}
		dur, err := caddy.ParseDuration(v)
		if err != nil || dur < minLockTTL {
			return true, d.Errf("redis lock_ttl: want a duration of at least %s, got %q", minLockTTL, v)
		}
		s.LockTTL = caddy.Duration(dur)
		return true, nil
	})
}

// keys

func (s *Storage) dataKey(key string) string { return s.KeyPrefix + ":data:" + key }
func (s *Storage) indexKey() string          { return s.KeyPrefix + ":index" }
func (s *Storage) lockKey(name string) string {
	return s.KeyPrefix + ":lock:" + name
}

// normalize makes a certmagic key canonical: slash-separated, no leading, trailing or
// doubled slashes, "" for the root.
func normalize(key string) string {
	k := strings.Trim(path.Clean("/"+key), "/")
	return k
}

// wrap names the failing operation without the value; a failure to talk to Redis
// matches ErrUnavailable.
func (s *Storage) wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		err = unavailable(err)
	}
	return fmt.Errorf("redis storage %s %q: %w", op, key, err)
}

// Store puts value at key.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	k := normalize(key)
	if k == "" {
		return fmt.Errorf("redis storage store: empty key")
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.dataKey(k), "value", value, "modified", now)
		p.ZAdd(ctx, s.indexKey(), redis.Z{Member: k})
		return nil
	})
	return s.wrap("store", k, err)
}

// Load returns the value at key, or an error matching fs.ErrNotExist.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	k := normalize(key)
	b, err := s.client.HGet(ctx, s.dataKey(k), "value").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, s.wrap("load", k, fs.ErrNotExist)
	}
	return b, s.wrap("load", k, err)
}

// Delete removes key and, when key is a directory, every key under it.
func (s *Storage) Delete(ctx context.Context, key string) error {
	k := normalize(key)
	for {
		under, err := s.under(ctx, k, 512)
		if err != nil {
			return s.wrap("delete", k, err)
		}
		if k != "" {
			under = append(under, k)
		}
		if len(under) == 0 {
			return nil
		}
		_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			members := make([]any, len(under))
			for i, u := range under {
				p.Del(ctx, s.dataKey(u))
				members[i] = u
			}
			p.ZRem(ctx, s.indexKey(), members...)
			return nil
		})
		if err != nil {
			return s.wrap("delete", k, err)
		}
		if len(under) < 512 {
			return nil
		}
	}
}

// under lists up to limit stored keys strictly below dir (all keys for the root).
func (s *Storage) under(ctx context.Context, dir string, limit int64) ([]string, error) {
	r := redis.ZRangeArgs{Key: s.indexKey(), Start: "-", Stop: "+", ByLex: true, Count: limit}
	if dir != "" {
		// Keys below dir start with "dir/"; '0' is the byte after '/', so they all sort
		// in [dir/, dir0).
		r.Start, r.Stop = "["+dir+"/", "("+dir+"0"
	}
	return s.client.ZRangeArgs(ctx, r).Result()
}

// Exists reports whether key is stored or is a directory of stored keys.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	k := normalize(key)
	if k != "" {
		n, err := s.client.Exists(ctx, s.dataKey(k)).Result()
		if err == nil && n > 0 {
			return true
		}
	}
	under, err := s.under(ctx, k, 1)
	return err == nil && len(under) > 0
}

// List returns the keys in dir: its direct children (files and directories), or with
// recursive every key and directory below it, as certmagic's FileStorage does. A dir
// that does not exist is an error matching fs.ErrNotExist.
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	k := normalize(dir)
	all, err := s.under(ctx, k, 0)
	if err != nil {
		return nil, s.wrap("list", k, err)
	}
	if len(all) == 0 {
		if k != "" && s.Exists(ctx, k) {
			return []string{}, nil // a file, as FileStorage lists it
		}
		return nil, s.wrap("list", k, fs.ErrNotExist)
	}
	base := ""
	if k != "" {
		base = k + "/"
	}
	seen := map[string]bool{}
	var out []string
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, full := range all {
		rest := strings.TrimPrefix(full, base)
		parts := strings.Split(rest, "/")
		if !recursive {
			add(base + parts[0])
			continue
		}
		for i := range parts {
			add(base + strings.Join(parts[:i+1], "/"))
		}
	}
	sort.Strings(out)
	return out, nil
}

// Stat describes key: a stored value (terminal) or a directory of them.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	k := normalize(key)
	var modified *redis.StringCmd
	var size *redis.IntCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		modified = p.HGet(ctx, s.dataKey(k), "modified")
		size = p.HStrLen(ctx, s.dataKey(k), "value")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return certmagic.KeyInfo{}, s.wrap("stat", k, err)
	}
	if ms, err := modified.Int64(); err == nil {
		return certmagic.KeyInfo{Key: k, Modified: time.UnixMilli(ms), Size: size.Val(), IsTerminal: true}, nil
	}
	under, err := s.under(ctx, k, 1)
	if err != nil {
		return certmagic.KeyInfo{}, s.wrap("stat", k, err)
	}
	if len(under) == 0 {
		return certmagic.KeyInfo{}, s.wrap("stat", k, fs.ErrNotExist)
	}
	return certmagic.KeyInfo{Key: k, IsTerminal: false}, nil
}

// String identifies the storage (without secrets) in certmagic's logs and in caddy's
// storage-sharing checks.
func (s *Storage) String() string {
	return fmt.Sprintf("RedisStorage:%s/%d/%s", s.Address, s.DB, s.KeyPrefix)
}

// Interface guards
var (
	_ caddy.Provisioner      = (*Storage)(nil)
	_ caddy.Validator        = (*Storage)(nil)
	_ caddy.CleanerUpper     = (*Storage)(nil)
	_ caddy.StorageConverter = (*Storage)(nil)
	_ caddyfile.Unmarshaler  = (*Storage)(nil)
	_ certmagic.Storage      = (*Storage)(nil)
)
