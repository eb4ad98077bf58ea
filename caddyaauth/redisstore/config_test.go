package redisstore

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestStorageUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		in      string
		want    Storage
		wantErr string
	}{
		{in: `redis`, want: Storage{}},
		{in: `redis {
			address redis.internal:6380
			username caddy
			password {env.REDIS_PASSWORD}
			db 2
			tls
			tls_server_name redis.internal
			key_prefix edge
			dial_timeout 2s
			read_timeout 500ms
			lock_ttl 30s
		}`, want: Storage{Config: Config{Address: "redis.internal:6380", Username: "caddy",
			Password: "{env.REDIS_PASSWORD}", DB: 2, TLS: true, TLSServerName: "redis.internal",
			KeyPrefix: "edge", DialTimeout: caddy.Duration(2 * time.Second),
			ReadTimeout: caddy.Duration(500 * time.Millisecond)}, LockTTL: caddy.Duration(30 * time.Second)}},
		{in: `redis {
			tls off
		}`, want: Storage{}},
		{in: `redis extra`, wantErr: "wrong argument count"},
		{in: "redis {\n address a:1\n address b:2\n}", wantErr: "already specified"},
		{in: "redis {\n db -1\n}", wantErr: "database number"},
		{in: "redis {\n db two\n}", wantErr: "database number"},
		{in: "redis {\n tls maybe\n}", wantErr: "want on or off"},
		{in: "redis {\n dial_timeout 0s\n}", wantErr: "positive duration"},
		{in: "redis {\n lock_ttl 10ms\n}", wantErr: "at least 1s"},
		{in: "redis {\n address\n}", wantErr: "wrong argument count"},
		{in: "redis {\n host x\n}", wantErr: "unrecognized subdirective 'host'"},
	}
	for _, tt := range tests {
		var s Storage
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: want error containing %q, got %v", tt.in, tt.wantErr, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if s.Config != tt.want.Config || s.LockTTL != tt.want.LockTTL {
			t.Errorf("%q:\n got %+v\nwant %+v", tt.in, s, tt.want)
		}
	}
}

func TestConfigValidateAndResolve(t *testing.T) {
	bad := []Config{
		{DB: -1},
		{DB: maxDB},
		{TLSServerName: "x"}, // without tls
		{KeyPrefix: strings.Repeat("p", maxKeyPrefixLength+1)},
		{DialTimeout: -1},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v): want an error", c)
		}
	}
	if err := (&Config{TLS: true, TLSServerName: "r", DB: 3}).Validate(); err != nil {
		t.Errorf("a good config: %v", err)
	}
	t.Setenv("AAUTH_TEST_REDIS_PW", "s3cret")
	r := Config{Password: "{env.AAUTH_TEST_REDIS_PW}"}.resolved()
	if r.Password != "s3cret" || r.Address != DefaultAddress || r.KeyPrefix != DefaultKeyPrefix ||
		time.Duration(r.DialTimeout) != DefaultDialTimeout || time.Duration(r.ReadTimeout) != DefaultReadTimeout {
		t.Errorf("resolved = %+v", r)
	}
	if strings.Contains(r.poolKey(), "s3cret") {
		t.Error("the pool key holds the password")
	}
	if r.poolKey() == (Config{Password: "other"}).resolved().poolKey() {
		t.Error("different passwords share a client")
	}
	if o := (Config{TLS: true, TLSServerName: "n"}).resolved().options(); o.TLSConfig == nil || o.TLSConfig.ServerName != "n" {
		t.Errorf("tls options = %+v", o.TLSConfig)
	}
	if o := (Config{}).resolved().options(); o.TLSConfig != nil || o.MaxRetries != -1 {
		t.Errorf("plain options = %+v", o)
	}
}

func TestSharedClientIsPooled(t *testing.T) {
	c1, _, rel1, err := Shared(Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	c2, _, rel2, err := Shared(Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	c3, _, rel3, _ := Shared(Config{Address: "127.0.0.1:1", DB: 1})
	if c1 != c2 || c1 == c3 {
		t.Fatal("one client per distinct config expected")
	}
	for _, rel := range []func() error{rel1, rel2, rel3, rel1} { // release is idempotent
		if err := rel(); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := clientPool.References(Config{Address: "127.0.0.1:1"}.resolved().poolKey()); ok {
		t.Fatal("pool kept a released client")
	}
}
