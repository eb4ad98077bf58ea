package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCredentialPrecedence: flags > environment > profile, for -key, -id/-agent-token
// (one setting: the first layer naming either decides) and -dev; -profile and
// AAUTH_PROFILE pick the profile.
func TestCredentialPrecedence(t *testing.T) {
	cfgDir := t.TempDir()
	cfg := filepath.Join(cfgDir, "config.json")
	if err := os.WriteFile(cfg, []byte(`{"profiles": {
		"default": {"key": "agent.jwk", "id": "https://agent.example", "dev": true},
		"delegate": {"key": "~/delegate.jwk", "agent_token": "/abs/token.jwt"}
	}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	prof := filepath.Join(cfgDir, "agent.jwk")
	type want struct {
		key, id, tok string
		dev          bool
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want want
		err  string
	}{
		{"profile only", nil, nil, want{prof, "https://agent.example", "", true}, ""},
		{"env over profile", map[string]string{envKey: "/env.jwk", envID: "https://env.example", envDev: "false"}, nil,
			want{"/env.jwk", "https://env.example", "", false}, ""},
		{"flags over env", map[string]string{envKey: "/env.jwk", envID: "https://env.example", envDev: "0"},
			[]string{"-key", "/flag.jwk", "-id", "https://flag.example", "-dev"}, want{"/flag.jwk", "https://flag.example", "", true}, ""},
		{"env agent token replaces the profile's id", map[string]string{envAgentToken: "/env.jwt"}, nil,
			want{prof, "", "/env.jwt", true}, ""},
		{"flag agent token replaces env and profile id", map[string]string{envID: "https://env.example"}, []string{"-agent-token", "/flag.jwt"},
			want{prof, "", "/flag.jwt", true}, ""},
		{"an empty flag turns the profile's id off", nil, []string{"-id", ""}, want{prof, "", "", true}, ""},
		{"an empty variable turns the profile's key off", map[string]string{envKey: "", envID: ""}, nil, want{"", "", "", true}, ""},
		{"-profile", nil, []string{"-profile", "delegate"}, want{filepath.Join(home, "delegate.jwk"), "", "/abs/token.jwt", false}, ""},
		{"AAUTH_PROFILE", map[string]string{envProfile: "delegate"}, nil, want{filepath.Join(home, "delegate.jwk"), "", "/abs/token.jwt", false}, ""},
		{"-profile over AAUTH_PROFILE", map[string]string{envProfile: "nosuch"}, []string{"-profile", "default"},
			want{prof, "https://agent.example", "", true}, ""},
		{"unknown profile", nil, []string{"-profile", "nosuch"}, want{}, `has no profile "nosuch"`},
		{"bad AAUTH_DEV", map[string]string{envDev: "maybe"}, nil, want{}, "AAUTH_DEV"},
		{"both at one layer", map[string]string{envID: "https://env.example", envAgentToken: "/env.jwt"}, nil, want{}, "alternatives"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envConfig, cfg)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var errb bytes.Buffer
			o, _, ok := parseFetchFlags(append(tc.args, "http://a.example"), &errb)
			if tc.err != "" {
				if ok || !strings.Contains(errb.String(), tc.err) {
					t.Fatalf("ok %v, stderr %q; want an error with %q", ok, errb.String(), tc.err)
				}
				return
			}
			if !ok {
				t.Fatalf("stderr %q", errb.String())
			}
			if got := (want{o.keyFile, o.id, o.tokenFile, o.dev}); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestProfileFile: a missing file is no profile; a malformed one (or an unknown field,
// a likely typo) is an error naming the file.
func TestProfileFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(envConfig, filepath.Join(dir, "missing.json"))
	if p, err := loadProfile(""); err != nil || p != (profile{}) {
		t.Errorf("missing file: %+v %v", p, err)
	}
	if _, err := loadProfile("named"); err == nil {
		t.Errorf("a named profile in a missing file must fail")
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"profiles": {"default": {"kee": "x"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envConfig, bad)
	if _, err := loadProfile(""); err == nil || !strings.Contains(err.Error(), "bad.json") || !strings.Contains(err.Error(), "kee") {
		t.Errorf("unknown field: %v", err)
	}
	// The default location follows XDG_CONFIG_HOME.
	t.Setenv(envConfig, "")
	t.Setenv("XDG_CONFIG_HOME", dir)
	if p, err := configPath(); err != nil || p != filepath.Join(dir, "aauth", "config.json") {
		t.Errorf("configPath %q %v", p, err)
	}
}

// TestServeAndDelegateUseTheProfile: serve takes -key and -id, delegate -key, from the
// environment too.
func TestServeAndDelegateUseTheProfile(t *testing.T) {
	t.Setenv(envKey, "/env.jwk")
	t.Setenv(envID, "http://127.0.0.1:1")
	var errb bytes.Buffer
	o, _, ok := parseServeFlags(nil, &errb)
	if !ok || o.keyFile != "/env.jwk" || o.id != "http://127.0.0.1:1" {
		t.Errorf("serve: %+v %v %s", o, ok, errb.String())
	}
	r := runCLI(t, "delegate", "-server", "http://127.0.0.1:1", "-secret", "s")
	if r.code != exitFailure || !strings.Contains(r.stderr, "/env.jwk") {
		t.Errorf("delegate should try to read $AAUTH_KEY: exit %d %q", r.code, r.stderr)
	}
}
