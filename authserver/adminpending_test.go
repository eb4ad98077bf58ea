package authserver

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap/zaptest"
)

// adminPending lists GET /aauth/pending for testIssuer, and returns the raw answer too.
func (c *consentEnv) adminPending() ([]PendingInfo, string) {
	c.t.Helper()
	rec := httptest.NewRecorder()
	admin := &PendingAdmin{now: c.now}
	if err := admin.handleList(rec, httptest.NewRequest(http.MethodGet, "/aauth/pending", nil)); err != nil {
		c.t.Fatal(err)
	}
	var all, mine []PendingInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &all); err != nil {
		c.t.Fatalf("%v: %s", err, rec.Body)
	}
	for _, p := range all {
		if p.Issuer == testIssuer {
			mine = append(mine, p)
		}
	}
	return mine, rec.Body.String()
}

// TestAdminPending: GET /aauth/pending lists a waiting request, then the user's decision
// (with the user), and drops it once the agent collected the answer or it expired
// undecided; it never shows the interaction code or the token.
func TestAdminPending(t *testing.T) {
	c := newConsentEnv(t, nil)
	if list, _ := c.adminPending(); len(list) != 0 {
		t.Fatalf("nothing pending yet: %+v", list)
	}
	id, code := c.pending(c.agent, "")
	list, raw := c.adminPending()
	if len(list) != 1 || list[0].ID != id || list[0].State != PendingWaiting || list[0].Agent != c.agent.ID ||
		list[0].Resource != c.resource.ID || len(list[0].Scopes) != 1 || list[0].Scopes[0] != consentScope ||
		list[0].User != "" || list[0].Expires.Sub(list[0].Created) != DefaultPendingLifetime {
		t.Fatalf("waiting: %+v", list)
	}
	if strings.Contains(raw, code) || strings.Contains(raw, `"code"`) {
		t.Fatalf("the interaction code is listed: %s", raw)
	}

	c.browser().approve(code, "alice")
	if list, _ = c.adminPending(); len(list) != 1 || list[0].State != PendingApproved || list[0].User != "alice" {
		t.Fatalf("approved: %+v", list)
	}
	tok := c.poll(c.agent, id).str("auth_token")
	if tok == "" {
		t.Fatal("no token after approval")
	}
	if list, raw = c.adminPending(); len(list) != 0 || strings.Contains(raw, tok) {
		t.Fatalf("collected: %s", raw)
	}

	// Denied, then expired undecided.
	_, code = c.pending(c.other, "")
	b := c.browser()
	b.decide(b.login(code, "bob"), code, "deny")
	if list, _ = c.adminPending(); len(list) != 1 || list[0].State != PendingDenied || list[0].User != "bob" {
		t.Fatalf("denied: %+v", list)
	}
	c.advance(time.Second)
	c.pending(c.agent, "")
	if list, _ = c.adminPending(); len(list) != 2 || list[0].State != PendingWaiting {
		t.Fatalf("newest first: %+v", list)
	}
	c.advance(DefaultPendingLifetime)
	if list, _ = c.adminPending(); len(list) != 1 || list[0].State != PendingDenied {
		t.Fatalf("an expired undecided request is not listed: %+v", list)
	}
}

func TestAdminPendingMethod(t *testing.T) {
	admin := &PendingAdmin{}
	err := admin.handleList(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/aauth/pending", nil))
	if ae, ok := err.(caddy.APIError); !ok || ae.HTTPStatus != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v", err)
	}
	if r := admin.Routes(); len(r) != 1 || r[0].Pattern != "/aauth/pending" {
		t.Fatalf("routes %+v", r)
	}
}

// TestSeedAdmissionsFromStorage: a store started over storage with pending records but
// no admission record counts the undecided ones (the same storage walk as the admin
// list), not the decided one.
func TestSeedAdmissionsFromStorage(t *testing.T) {
	c := newConsentEnv(t, nil)
	c.pending(c.agent, "")
	c.pending(c.other, "")
	_, code := c.pending(c.agent, "")
	c.browser().approve(code, "alice")
	ctx := context.Background()
	s := c.h.consent
	if err := s.storage().Delete(ctx, s.admissionKey()); err != nil {
		t.Fatal(err)
	}
	fresh, err := newConsentStore(ctx, testIssuer, c.store, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Destruct()
	raw, err := fresh.state().Load(ctx, fresh.admissionKey())
	if err != nil {
		t.Fatalf("no admission record seeded: %v", err)
	}
	a, err := decodeAdmissions(raw, 0)
	if err != nil || len(a.byID) != 2 {
		t.Fatalf("seeded %d places (%v), want the 2 undecided requests: %s", len(a.byID), err, raw)
	}
}
