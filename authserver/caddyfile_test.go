package authserver

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	cases := []struct {
		name  string
		input string
		want  Handler
	}{
		{"minimal", `aauth_server {
			issuer https://auth.example.com
		}`, Handler{Issuer: "https://auth.example.com"}},
		{"every option", `aauth_server {
			issuer https://auth.example.com
			token_lifetime 2h
			allow_long_tokens
			signature_window 30s
			trust_issuer https://auth.partner.example
			trust_issuer https://a.example https://b.example
			policy {
				allow   agent https://agent.example.com scope data.read
				consent scope data.write
				deny    agent https://bad.example
				allow   resource https://api.example.com agent https://a.example https://b.example
				deny
				consent agent * resource * scope x y
				default consent
			}
		}`, Handler{
			Issuer:          "https://auth.example.com",
			TokenLifetime:   caddy.Duration(2 * time.Hour),
			AllowLongTokens: true,
			SignatureWindow: caddy.Duration(30 * time.Second),
			TrustIssuers:    []string{"https://auth.partner.example", "https://a.example", "https://b.example"},
			Policy: &Policy{Default: EffectConsent, Rules: []Rule{
				{Effect: EffectAllow, Agents: []string{"https://agent.example.com"}, Scopes: []string{"data.read"}},
				{Effect: EffectConsent, Scopes: []string{"data.write"}},
				{Effect: EffectDeny, Agents: []string{"https://bad.example"}},
				{Effect: EffectAllow, Resources: []string{"https://api.example.com"}, Agents: []string{"https://a.example", "https://b.example"}},
				{Effect: EffectDeny},
				{Effect: EffectConsent, Agents: []string{"*"}, Resources: []string{"*"}, Scopes: []string{"x", "y"}},
			}},
		}},
		{"allow_long_tokens false", `aauth_server {
			issuer https://auth.example.com
			allow_long_tokens false
			token_lifetime 30m
		}`, Handler{Issuer: "https://auth.example.com", TokenLifetime: caddy.Duration(30 * time.Minute)}},
		{"allow_long_tokens true then 1d", `aauth_server {
			token_lifetime 1d
			allow_long_tokens true
			issuer https://auth.example.com
		}`, Handler{Issuer: "https://auth.example.com", TokenLifetime: caddy.Duration(24 * time.Hour), AllowLongTokens: true}},
		{"exactly 1h", `aauth_server {
			issuer https://auth.example.com
			token_lifetime 1h
		}`, Handler{Issuer: "https://auth.example.com", TokenLifetime: caddy.Duration(time.Hour)}},
		{"empty policy", `aauth_server {
			issuer https://auth.example.com
			policy
		}`, Handler{Issuer: "https://auth.example.com", Policy: &Policy{}}},
		{"consent options", `aauth_server {
			issuer https://auth.example.com
			pending_lifetime 5m
			max_poll_wait 20s
			remember_for 7d
			user zoe %[1]s
			user alice %[2]s
			policy {
				default consent
			}
		}`, Handler{
			Issuer: "https://auth.example.com", PendingLifetime: caddy.Duration(5 * time.Minute),
			MaxPollWait: caddy.Duration(20 * time.Second), RememberFor: caddy.Duration(7 * 24 * time.Hour),
			Users:  []User{{Name: "zoe", Hash: testHash1}, {Name: "alice", Hash: testHash2}},
			Policy: &Policy{Default: EffectConsent},
		}},
		{"user_from", `aauth_server {
			issuer https://auth.example.com
			user_from {http.auth.user.id}
		}`, Handler{Issuer: "https://auth.example.com", UserFrom: "{http.auth.user.id}"}},
		{"require_signed_body", `aauth_server {
			issuer https://auth.example.com
			require_signed_body
		}`, Handler{Issuer: "https://auth.example.com", RequireSignedBody: true}},
		{"require_signed_body false", `aauth_server {
			issuer https://auth.example.com
			require_signed_body false
		}`, Handler{Issuer: "https://auth.example.com"}},
		{"deprecated allow_unsigned_body", `aauth_server {
			issuer https://auth.example.com
			allow_unsigned_body true
		}`, Handler{Issuer: "https://auth.example.com", AllowUnsignedBody: true}},
		{"token_rate_limit", `aauth_server {
			issuer https://auth.example.com
			token_rate_limit 120 2m
		}`, Handler{Issuer: "https://auth.example.com", TokenRateLimit: &RateLimit{Requests: 120, Window: caddy.Duration(2 * time.Minute)}}},
		{"token_rate_limit off", `aauth_server {
			issuer https://auth.example.com
			token_rate_limit off
		}`, Handler{Issuer: "https://auth.example.com", TokenRateLimit: &RateLimit{Off: true}}},
		{"chaining options", `aauth_server {
			issuer https://auth.example.com
			trust_issuer https://auth1.example.com
			max_exchange_depth 5
			refresh_window 12h
		}`, Handler{Issuer: "https://auth.example.com", TrustIssuers: []string{"https://auth1.example.com"},
			MaxExchangeDepth: 5, RefreshWindow: caddy.Duration(12 * time.Hour)}},
		{"refresh_window off", `aauth_server {
			issuer https://auth.example.com
			refresh_window off
		}`, Handler{Issuer: "https://auth.example.com", RefreshOff: true}},
		{"dev identifier shape", `aauth_server {
			issuer http://127.0.0.1:9443
		}`, Handler{Issuer: "http://127.0.0.1:9443"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			input := tc.input
			if strings.Contains(input, "%[1]s") {
				input = fmt.Sprintf(input, testHash1, testHash2)
			}
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", h, tc.want)
			}
		})
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	const iss = "issuer https://auth.example.com\n"
	cases := []struct {
		name  string
		input string
		err   string
	}{
		{"inline argument", "aauth_server https://auth.example.com {\n" + iss + "}", "wrong argument count"},
		{"no issuer", "aauth_server {\n}", "issuer is required"},
		{"no block", "aauth_server", "issuer is required"},
		{"issuer no arg", "aauth_server {\nissuer\n}", "wrong argument count"},
		{"issuer two args", "aauth_server {\nissuer https://a.example https://b.example\n}", "wrong argument count"},
		{"issuer with path", "aauth_server {\nissuer https://a.example/as\n}", "issuer:"},
		{"issuer trailing slash", "aauth_server {\nissuer https://a.example/\n}", "issuer:"},
		{"issuer not a URL", "aauth_server {\nissuer auth.example.com\n}", "issuer:"},
		{"duplicate issuer", "aauth_server {\n" + iss + iss + "}", "issuer specified more than once"},
		{"unknown option", "aauth_server {\n" + iss + "colour blue\n}", `unrecognized aauth_server option "colour"`},
		{"token_lifetime no arg", "aauth_server {\n" + iss + "token_lifetime\n}", "wrong argument count"},
		{"token_lifetime bad", "aauth_server {\n" + iss + "token_lifetime soon\n}", "token_lifetime: invalid duration"},
		{"token_lifetime zero", "aauth_server {\n" + iss + "token_lifetime 0s\n}", "token_lifetime must be positive"},
		{"token_lifetime negative", "aauth_server {\n" + iss + "token_lifetime -1h\n}", "token_lifetime must be positive"},
		{"token_lifetime over 1h", "aauth_server {\n" + iss + "token_lifetime 61m\n}", "allow_long_tokens"},
		{"token_rate_limit no args", "aauth_server {\n" + iss + "token_rate_limit\n}", "want <requests> <window> (e.g. 60 1m) or off"},
		{"token_rate_limit one number", "aauth_server {\n" + iss + "token_rate_limit 60\n}", "want <requests> <window>"},
		{"token_rate_limit three args", "aauth_server {\n" + iss + "token_rate_limit 60 1m 2\n}", "want <requests> <window>"},
		{"token_rate_limit off extra", "aauth_server {\n" + iss + "token_rate_limit off 1m\n}", "off takes no other arguments"},
		{"token_rate_limit zero", "aauth_server {\n" + iss + "token_rate_limit 0 1m\n}", "requests must be a whole number from 1 to 100000"},
		{"token_rate_limit negative", "aauth_server {\n" + iss + "token_rate_limit -5 1m\n}", "requests must be a whole number"},
		{"token_rate_limit huge", "aauth_server {\n" + iss + "token_rate_limit 100001 1m\n}", "requests must be a whole number"},
		{"token_rate_limit not a number", "aauth_server {\n" + iss + "token_rate_limit many 1m\n}", "requests must be a whole number"},
		{"token_rate_limit bad window", "aauth_server {\n" + iss + "token_rate_limit 60 soon\n}", `invalid window "soon"`},
		{"token_rate_limit short window", "aauth_server {\n" + iss + "token_rate_limit 60 500ms\n}", "window must be between 1s and 24h"},
		{"token_rate_limit long window", "aauth_server {\n" + iss + "token_rate_limit 60 25h\n}", "window must be between 1s and 24h"},
		{"token_rate_limit twice", "aauth_server {\n" + iss + "token_rate_limit 60 1m\ntoken_rate_limit off\n}", "token_rate_limit specified more than once"},
		{"token_lifetime over 1h, allow false", "aauth_server {\n" + iss + "token_lifetime 2h\nallow_long_tokens false\n}", "allow_long_tokens"},
		{"duplicate token_lifetime", "aauth_server {\n" + iss + "token_lifetime 1h\ntoken_lifetime 1h\n}", "token_lifetime specified more than once"},
		{"allow_long_tokens bad", "aauth_server {\n" + iss + "allow_long_tokens maybe\n}", "not true or false"},
		{"allow_long_tokens two args", "aauth_server {\n" + iss + "allow_long_tokens true true\n}", "wrong argument count"},
		{"duplicate allow_long_tokens", "aauth_server {\n" + iss + "allow_long_tokens\nallow_long_tokens\n}", "specified more than once"},
		{"signature_window bad", "aauth_server {\n" + iss + "signature_window 5 seconds\n}", "wrong argument count"},
		{"signature_window unparsable", "aauth_server {\n" + iss + "signature_window fast\n}", "signature_window: invalid duration"},
		{"signature_window zero", "aauth_server {\n" + iss + "signature_window 0\n}", "signature_window must be positive"},
		{"duplicate signature_window", "aauth_server {\n" + iss + "signature_window 1m\nsignature_window 1m\n}", "specified more than once"},
		{"trust_issuer no arg", "aauth_server {\n" + iss + "trust_issuer\n}", "wrong argument count"},
		{"trust_issuer bad", "aauth_server {\n" + iss + "trust_issuer partner\n}", "trust_issuer:"},
		{"trust_issuer twice", "aauth_server {\n" + iss + "trust_issuer https://p.example\ntrust_issuer https://p.example\n}", "specified more than once"},
		{"policy inline arg", "aauth_server {\n" + iss + "policy allow\n}", "wrong argument count"},
		{"duplicate policy", "aauth_server {\n" + iss + "policy {\n}\npolicy {\n}\n}", "policy specified more than once"},
		{"unknown effect", "aauth_server {\n" + iss + "policy {\npermit agent https://a.example\n}\n}", `unknown effect "permit"`},
		{"value before group", "aauth_server {\n" + iss + "policy {\nallow https://a.example\n}\n}", "expected agent, resource or scope"},
		{"empty agent group", "aauth_server {\n" + iss + "policy {\nallow agent scope x\n}\n}", "agent needs at least one value"},
		{"empty trailing scope group", "aauth_server {\n" + iss + "policy {\nallow agent https://a.example scope\n}\n}", "scope needs at least one value"},
		{"empty resource group", "aauth_server {\n" + iss + "policy {\ndeny resource\n}\n}", "resource needs at least one value"},
		{"duplicate group", "aauth_server {\n" + iss + "policy {\nallow agent https://a.example agent https://b.example\n}\n}", "agent specified more than once in one rule"},
		{"duplicate value", "aauth_server {\n" + iss + "policy {\nallow scope x x\n}\n}", "listed twice"},
		{"bad agent", "aauth_server {\n" + iss + "policy {\nallow agent a.example\n}\n}", "policy rule 0: agents:"},
		{"bad resource", "aauth_server {\n" + iss + "policy {\ndeny resource https://r.example/api\n}\n}", "policy rule 0: resources:"},
		{"wildcard scope", "aauth_server {\n" + iss + "policy {\nallow scope *\n}\n}", "not a scope"},
		{"default no arg", "aauth_server {\n" + iss + "policy {\ndefault\n}\n}", "wrong argument count"},
		{"default bad", "aauth_server {\n" + iss + "policy {\ndefault maybe\n}\n}", "policy default: unknown effect"},
		{"user no hash", "aauth_server {\n" + iss + "user alice\n}", "wrong argument count"},
		{"user not bcrypt", "aauth_server {\n" + iss + "user alice secret\n}", "not a bcrypt hash"},
		{"user broken bcrypt", "aauth_server {\n" + iss + "user alice $2a$10$short\n}", "not a valid bcrypt hash"},
		{"user twice", "aauth_server {\n" + iss + "user alice " + testHash1 + "\nuser alice " + testHash2 + "\n}", "user alice specified more than once"},
		{"user and user_from", "aauth_server {\n" + iss + "user alice " + testHash1 + "\nuser_from {http.auth.user.id}\n}", "mutually exclusive"},
		{"user_from not a placeholder", "aauth_server {\n" + iss + "user_from alice\n}", "not a placeholder"},
		{"user_from twice", "aauth_server {\n" + iss + "user_from {a}\nuser_from {b}\n}", "specified more than once"},
		{"pending_lifetime bad", "aauth_server {\n" + iss + "pending_lifetime soon\n}", "pending_lifetime: invalid duration"},
		{"max_poll_wait zero", "aauth_server {\n" + iss + "max_poll_wait 0s\n}", "max_poll_wait must be positive"},
		{"remember_for two args", "aauth_server {\n" + iss + "remember_for 1d 2d\n}", "wrong argument count"},
		{"require_signed_body bad", "aauth_server {\n" + iss + "require_signed_body maybe\n}", "not true or false"},
		{"require_signed_body twice", "aauth_server {\n" + iss + "require_signed_body\nrequire_signed_body\n}", "specified more than once"},
		{"allow_unsigned_body false", "aauth_server {\n" + iss + "allow_unsigned_body false\n}", "use require_signed_body"},
		{"allow_unsigned_body and require_signed_body", "aauth_server {\n" + iss + "allow_unsigned_body\nrequire_signed_body\n}", "conflicts"},
		{"duplicate default", "aauth_server {\n" + iss + "policy {\ndefault allow\ndefault deny\n}\n}", "policy default specified more than once"},
		{"max_exchange_depth no arg", "aauth_server {\n" + iss + "max_exchange_depth\n}", "wrong argument count"},
		{"max_exchange_depth zero", "aauth_server {\n" + iss + "max_exchange_depth 0\n}", "not a whole number from 1 to 16"},
		{"max_exchange_depth word", "aauth_server {\n" + iss + "max_exchange_depth deep\n}", "not a whole number"},
		{"max_exchange_depth too large", "aauth_server {\n" + iss + "max_exchange_depth 17\n}", "max_exchange_depth must be between 1 and 16"},
		{"max_exchange_depth twice", "aauth_server {\n" + iss + "max_exchange_depth 2\nmax_exchange_depth 3\n}", "specified more than once"},
		{"refresh_window no arg", "aauth_server {\n" + iss + "refresh_window\n}", "wrong argument count"},
		{"refresh_window bad", "aauth_server {\n" + iss + "refresh_window never\n}", "not a positive duration or off"},
		{"refresh_window zero", "aauth_server {\n" + iss + "refresh_window 0s\n}", "not a positive duration or off"},
		{"refresh_window too long", "aauth_server {\n" + iss + "refresh_window 31d\n}", "at most 30 days"},
		{"refresh_window two args", "aauth_server {\n" + iss + "refresh_window 1h off\n}", "wrong argument count"},
		{"refresh_window twice", "aauth_server {\n" + iss + "refresh_window 1h\nrefresh_window off\n}", "specified more than once"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The parser checks the syntax, Validate the values (as for JSON).
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil {
				err = h.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	const iss = "https://auth.example.com"
	cases := []struct {
		name string
		h    Handler
		err  string
	}{
		{"minimal", Handler{Issuer: iss}, ""},
		{"no issuer", Handler{}, "issuer is required"},
		{"http issuer without dev", Handler{Issuer: "http://auth.example.com"}, "issuer:"},
		{"loopback issuer without dev", Handler{Issuer: "https://127.0.0.1"}, "issuer:"},
		{"issuer with path", Handler{Issuer: iss + "/x"}, "issuer:"},
		{"lifetime 1h", Handler{Issuer: iss, TokenLifetime: caddy.Duration(time.Hour)}, ""},
		{"lifetime over 1h", Handler{Issuer: iss, TokenLifetime: caddy.Duration(time.Hour + time.Second)}, "allow_long_tokens"},
		{"lifetime over 1h allowed", Handler{Issuer: iss, TokenLifetime: caddy.Duration(8 * time.Hour), AllowLongTokens: true}, ""},
		{"negative lifetime", Handler{Issuer: iss, TokenLifetime: -1}, "negative"},
		{"sub-second lifetime", Handler{Issuer: iss, TokenLifetime: caddy.Duration(time.Millisecond)}, "at least 1s"},
		{"fractional lifetime", Handler{Issuer: iss, TokenLifetime: caddy.Duration(1500 * time.Millisecond)}, "whole number"},
		{"negative window", Handler{Issuer: iss, SignatureWindow: -1}, "signature_window"},
		{"trust issuers", Handler{Issuer: iss, TrustIssuers: []string{"https://p.example", "https://q.example"}}, ""},
		{"bad trust issuer", Handler{Issuer: iss, TrustIssuers: []string{"p.example"}}, "trust_issuer:"},
		{"duplicate trust issuer", Handler{Issuer: iss, TrustIssuers: []string{"https://p.example", "https://p.example"}}, "more than once"},
		{"bad policy", Handler{Issuer: iss, Policy: &Policy{Default: "yes"}}, "policy default"},
		{"require_signed_body", Handler{Issuer: iss, RequireSignedBody: true}, ""},
		{"deprecated allow_unsigned_body", Handler{Issuer: iss, AllowUnsignedBody: true}, ""},
		{"both body options", Handler{Issuer: iss, RequireSignedBody: true, AllowUnsignedBody: true}, "conflicts"},
		{"rate limit", Handler{Issuer: iss, TokenRateLimit: &RateLimit{Requests: 10, Window: caddy.Duration(time.Second)}}, ""},
		{"rate limit off", Handler{Issuer: iss, TokenRateLimit: &RateLimit{Off: true}}, ""},
		{"rate limit off with values", Handler{Issuer: iss, TokenRateLimit: &RateLimit{Off: true, Requests: 5}}, "off cannot have"},
		{"rate limit negative", Handler{Issuer: iss, TokenRateLimit: &RateLimit{Requests: -1}}, "token_rate_limit: requests"},
		{"rate limit huge", Handler{Issuer: iss, TokenRateLimit: &RateLimit{Requests: maxTokenRateRequests + 1}}, "token_rate_limit: requests"},
		{"rate limit short window", Handler{Issuer: iss, TokenRateLimit: &RateLimit{Requests: 5, Window: caddy.Duration(time.Millisecond)}}, "token_rate_limit: window"},
		{"rate limit negative window", Handler{Issuer: iss, TokenRateLimit: &RateLimit{Requests: 5, Window: -1}}, "token_rate_limit: window"},
		{"max_exchange_depth", Handler{Issuer: iss, MaxExchangeDepth: 16}, ""},
		{"negative max_exchange_depth", Handler{Issuer: iss, MaxExchangeDepth: -1}, "max_exchange_depth must be between 1 and 16"},
		{"max_exchange_depth over limit", Handler{Issuer: iss, MaxExchangeDepth: 17}, "max_exchange_depth must be between 1 and 16"},
		{"refresh_window 30d", Handler{Issuer: iss, RefreshWindow: caddy.Duration(MaxRefreshWindow)}, ""},
		{"refresh_window over 30d", Handler{Issuer: iss, RefreshWindow: caddy.Duration(MaxRefreshWindow + time.Second)}, "refresh_window must be positive and at most 30 days"},
		{"negative refresh_window", Handler{Issuer: iss, RefreshWindow: -1}, "refresh_window must be positive"},
		{"refresh_off", Handler{Issuer: iss, RefreshOff: true}, ""},
		{"refresh_off with refresh_window", Handler{Issuer: iss, RefreshOff: true, RefreshWindow: caddy.Duration(time.Hour)}, "conflicts with refresh_off"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
	dev := Handler{Issuer: "http://127.0.0.1:9443", dev: true}
	if err := dev.Validate(); err != nil {
		t.Fatalf("dev issuer refused: %v", err)
	}
}

// TestCleanupAfterPartialProvision: Cleanup works on a zero handler and after a Provision
// that failed before taking pool references, and is idempotent.
func TestCleanupAfterPartialProvision(t *testing.T) {
	var h Handler
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	h = Handler{Issuer: "not an identifier"}
	if err := h.provision(t.Context(), deps{dev: true}); err == nil {
		t.Fatal("bad issuer provisioned")
	}
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	h = Handler{Issuer: "https://nostorage.example"}
	if err := h.provision(t.Context(), deps{}); err == nil {
		t.Fatal("provisioned without storage")
	}
	if err := h.Cleanup(); err != nil || h.Cleanup() != nil {
		t.Fatal(err)
	}
}

// Hashes of throw-away demo passwords (bcrypt cost 10), for Caddyfile tests.
const (
	testHash1 = "$2a$10$Bwb/nkovWTGf9ojsSjzfSuw9sm6FNuLOi55PPR7h58bdnBXmWWwNC"
	testHash2 = "$2a$10$BxQHoJl7Zsv05hU8uG0.WOEVaE6YeeiWZia4yVTDacM5mysDVpija"
)

// TestAllowUnsignedBodyDeprecated: the deprecated option still provisions, logs a
// warning, and publishes nothing.
func TestAllowUnsignedBodyDeprecated(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	h := Handler{Issuer: "https://auth.example", AllowUnsignedBody: true}
	if err := h.provision(t.Context(), deps{storage: newTestStorage(t), logger: zap.New(core)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	if logs.FilterMessageSnippet("allow_unsigned_body is deprecated").Len() != 1 {
		t.Fatalf("warnings %v", logs.All())
	}
	if strings.Contains(string(h.metadata), "additional_signature_components") {
		t.Fatalf("metadata %s", h.metadata)
	}
	quiet, logs2 := observer.New(zap.WarnLevel)
	h2 := Handler{Issuer: "https://auth2.example"}
	if err := h2.provision(t.Context(), deps{storage: newTestStorage(t), logger: zap.New(quiet)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h2.Cleanup() })
	if logs2.Len() != 0 {
		t.Fatalf("default config warned: %v", logs2.All())
	}
}

// TestValidateJSON: the checks the Caddyfile parser used to make alone now run in
// Validate, so a JSON config gets them too.
func TestValidateJSON(t *testing.T) {
	const iss = `"issuer": "https://auth.example.com"`
	for _, tc := range []struct{ json, err string }{
		{`{"issuer": "https://a.example/as"}`, "issuer:"},
		{`{` + iss + `, "trust_issuers": ["https://p.example", "https://p.example"]}`, "trust_issuer https://p.example specified more than once"},
		{`{` + iss + `, "policy": {"rules": [{"effect": "allow", "scopes": ["x", "x"]}]}}`, "policy rule 0: x listed twice"},
		{`{` + iss + `, "policy": {"rules": [{"effect": "deny", "agents": ["https://a.example", "https://a.example"]}]}}`, "listed twice"},
		{`{` + iss + `, "policy": {"default": "maybe"}}`, `policy default: unknown effect "maybe"`},
		{`{` + iss + `, "users": [{"name": "alice", "hash": "` + testHash1 + `"}, {"name": "alice", "hash": "` + testHash2 + `"}]}`, "user alice specified more than once"},
		{`{` + iss + `, "users": [{"name": "alice", "hash": "secret"}]}`, "user alice: password hash is not a bcrypt hash"},
		{`{` + iss + `, "user_from": "alice"}`, "not a placeholder"},
		{`{` + iss + `, "token_lifetime": "2h"}`, "add allow_long_tokens to permit it"},
		{`{` + iss + `, "token_rate_limit": {"requests": 100001, "window": "1m"}}`, "requests must be a whole number from 1 to 100000"},
		{`{` + iss + `, "token_rate_limit": {"requests": 60, "window": "48h"}}`, "window must be between 1s and 24h0m0s, got 48h0m0s"},
		{`{` + iss + `, "require_signed_body": true, "allow_unsigned_body": true}`, "conflicts"},
		{`{` + iss + `, "max_exchange_depth": 40}`, "max_exchange_depth must be between 1 and 16, got 40"},
		{`{` + iss + `, "refresh_window": "800h"}`, "refresh_window must be positive and at most 30 days"},
		{`{` + iss + `, "refresh_window": "1h", "refresh_off": true}`, "conflicts with refresh_off"},
		{`{` + iss + `, "trust_issuers": ["https://p.example"], "max_exchange_depth": 2, "refresh_window": "48h"}`, ""},
		{`{` + iss + `, "refresh_off": true}`, ""},
		{`{` + iss + `, "policy": {"rules": [{"effect": "allow", "agents": ["https://a.example"], "scopes": ["read"]}]}, "token_rate_limit": {"requests": 10, "window": "1m"}}`, ""},
	} {
		var h Handler
		if err := json.Unmarshal([]byte(tc.json), &h); err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		err := h.Validate()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want %q", tc.json, err, tc.err)
		}
	}
}
