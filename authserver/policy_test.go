package authserver

import (
	"strings"
	"testing"
)

func TestPolicyEvaluate(t *testing.T) {
	const (
		a1 = "https://a1.example"
		a2 = "https://a2.example"
		r1 = "https://r1.example"
		r2 = "https://r2.example"
	)
	rule := func(effect string, agents, resources, scopes []string) Rule {
		return Rule{Effect: effect, Agents: agents, Resources: resources, Scopes: scopes}
	}
	l := func(s ...string) []string { return s }
	cases := []struct {
		name     string
		policy   *Policy
		agent    string
		resource string
		scope    string
		want     string
	}{
		{"nil policy denies", nil, a1, r1, "x", EffectDeny},
		{"empty policy denies", &Policy{}, a1, r1, "x", EffectDeny},
		{"default allow", &Policy{Default: EffectAllow}, a1, r1, "x", EffectAllow},
		{"default consent", &Policy{Default: EffectConsent}, a1, r1, "x", EffectConsent},
		{"unconditional allow", &Policy{Rules: []Rule{rule(EffectAllow, nil, nil, nil)}}, a1, r1, "x y", EffectAllow},
		{"unconditional deny beats default allow", &Policy{Default: EffectAllow, Rules: []Rule{rule(EffectDeny, nil, nil, nil)}}, a1, r1, "", EffectDeny},
		{"deny beats consent and allow", &Policy{Rules: []Rule{
			rule(EffectAllow, l(a1), nil, nil), rule(EffectConsent, l(a1), nil, nil), rule(EffectDeny, l(a1), nil, nil)}}, a1, r1, "x", EffectDeny},
		{"rule order does not matter", &Policy{Rules: []Rule{
			rule(EffectDeny, l(a1), nil, nil), rule(EffectAllow, l(a1), nil, nil)}}, a1, r1, "x", EffectDeny},
		{"consent beats allow", &Policy{Rules: []Rule{
			rule(EffectAllow, nil, nil, nil), rule(EffectConsent, nil, nil, l("write"))}}, a1, r1, "read write", EffectConsent},
		{"allow when consent does not match", &Policy{Rules: []Rule{
			rule(EffectAllow, nil, nil, nil), rule(EffectConsent, nil, nil, l("write"))}}, a1, r1, "read", EffectAllow},
		{"agent match", &Policy{Rules: []Rule{rule(EffectAllow, l(a2, a1), nil, nil)}}, a1, r1, "x", EffectAllow},
		{"agent mismatch falls to default", &Policy{Default: EffectConsent, Rules: []Rule{rule(EffectAllow, l(a2), nil, nil)}}, a1, r1, "x", EffectConsent},
		{"agent exact string only", &Policy{Rules: []Rule{rule(EffectAllow, l(a1+"/"), nil, nil)}}, a1, r1, "x", EffectDeny},
		{"agent wildcard", &Policy{Rules: []Rule{rule(EffectAllow, l("*"), nil, nil)}}, a2, r1, "x", EffectAllow},
		{"resource match", &Policy{Rules: []Rule{rule(EffectAllow, nil, l(r1), nil)}}, a1, r1, "x", EffectAllow},
		{"resource mismatch", &Policy{Rules: []Rule{rule(EffectAllow, nil, l(r1), nil)}}, a1, r2, "x", EffectDeny},
		{"resource wildcard", &Policy{Rules: []Rule{rule(EffectAllow, nil, l("*"), nil)}}, a1, r2, "x", EffectAllow},
		{"all conditions must match", &Policy{Rules: []Rule{rule(EffectAllow, l(a1), l(r1), l("x"))}}, a1, r2, "x", EffectDeny},
		{"all conditions match", &Policy{Rules: []Rule{rule(EffectAllow, l(a1), l(r1), l("x"))}}, a1, r1, "x", EffectAllow},
		{"allow scope: every requested scope listed", &Policy{Rules: []Rule{rule(EffectAllow, nil, nil, l("read", "write"))}}, a1, r1, "write read", EffectAllow},
		{"allow scope: one unlisted scope spoils it", &Policy{Rules: []Rule{rule(EffectAllow, nil, nil, l("read"))}}, a1, r1, "read admin", EffectDeny},
		{"allow scope: no requested scope", &Policy{Rules: []Rule{rule(EffectAllow, nil, nil, l("read"))}}, a1, r1, "", EffectAllow},
		{"deny scope: any listed scope", &Policy{Default: EffectAllow, Rules: []Rule{rule(EffectDeny, nil, nil, l("admin", "root"))}}, a1, r1, "read root", EffectDeny},
		{"deny scope: none listed", &Policy{Default: EffectAllow, Rules: []Rule{rule(EffectDeny, nil, nil, l("admin"))}}, a1, r1, "read write", EffectAllow},
		{"deny scope: no requested scope", &Policy{Default: EffectAllow, Rules: []Rule{rule(EffectDeny, nil, nil, l("admin"))}}, a1, r1, "", EffectAllow},
		{"consent scope: any listed scope", &Policy{Rules: []Rule{rule(EffectConsent, nil, nil, l("write"))}}, a1, r1, "read write", EffectConsent},
		{"consent scope: none listed", &Policy{Rules: []Rule{rule(EffectConsent, nil, nil, l("write"))}}, a1, r1, "read", EffectDeny},
		{"deny for one agent only", &Policy{Default: EffectAllow, Rules: []Rule{rule(EffectDeny, l(a2), nil, nil)}}, a1, r1, "x", EffectAllow},
		{"DESIGN example: allow agent scope", &Policy{Default: EffectConsent, Rules: []Rule{
			rule(EffectAllow, l(a1), nil, l("data.read")),
			rule(EffectConsent, nil, nil, l("data.write")),
			rule(EffectDeny, l(a2), nil, nil)}}, a1, r1, "data.read", EffectAllow},
		{"DESIGN example: write needs consent", &Policy{Default: EffectConsent, Rules: []Rule{
			rule(EffectAllow, l(a1), nil, l("data.read")),
			rule(EffectConsent, nil, nil, l("data.write")),
			rule(EffectDeny, l(a2), nil, nil)}}, a1, r1, "data.read data.write", EffectConsent},
		{"DESIGN example: banned agent", &Policy{Default: EffectConsent, Rules: []Rule{
			rule(EffectAllow, l(a1), nil, l("data.read")),
			rule(EffectConsent, nil, nil, l("data.write")),
			rule(EffectDeny, l(a2), nil, nil)}}, a2, r1, "data.read", EffectDeny},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.policy.Evaluate(tc.agent, tc.resource, strings.Fields(tc.scope)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	cases := []struct {
		name   string
		policy *Policy
		err    string // "" means valid
	}{
		{"nil", nil, ""},
		{"good", &Policy{Default: EffectConsent, Rules: []Rule{{Effect: EffectAllow, Agents: []string{"*", "https://a.example"}, Scopes: []string{"s"}}}}, ""},
		{"bad default", &Policy{Default: "maybe"}, "unknown effect"},
		{"bad effect", &Policy{Rules: []Rule{{Effect: "permit"}}}, "unknown effect"},
		{"missing effect", &Policy{Rules: []Rule{{}}}, "unknown effect"},
		{"empty agents", &Policy{Rules: []Rule{{Effect: EffectAllow, Agents: []string{}}}}, "empty list"},
		{"empty resources", &Policy{Rules: []Rule{{Effect: EffectAllow, Resources: []string{}}}}, "empty list"},
		{"empty scopes", &Policy{Rules: []Rule{{Effect: EffectAllow, Scopes: []string{}}}}, "empty list"},
		{"agent with path", &Policy{Rules: []Rule{{Effect: EffectAllow, Agents: []string{"https://a.example/x"}}}}, "agents"},
		{"http agent without dev", &Policy{Rules: []Rule{{Effect: EffectAllow, Agents: []string{"http://a.example"}}}}, "agents"},
		{"resource not a URL", &Policy{Rules: []Rule{{Effect: EffectDeny, Resources: []string{"api"}}}}, "resources"},
		{"wildcard scope", &Policy{Rules: []Rule{{Effect: EffectAllow, Scopes: []string{"*"}}}}, "not a scope"},
		{"empty scope", &Policy{Rules: []Rule{{Effect: EffectAllow, Scopes: []string{""}}}}, "empty scope"},
		{"scope with space", &Policy{Rules: []Rule{{Effect: EffectAllow, Scopes: []string{"a b"}}}}, "space"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.validate(false)
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
	if err := (&Policy{Rules: []Rule{{Effect: EffectAllow, Agents: []string{"http://127.0.0.1:9000"}}}}).validate(true); err != nil {
		t.Fatalf("dev identifier refused: %v", err)
	}
}
