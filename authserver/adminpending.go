package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// PendingInfo is a deferred token request (draft-hardt-aauth §10.2, §11.3) as the admin
// API lists it: waiting for the user's decision, or decided and not yet collected by the
// agent's poll. It never carries the interaction code nor any token.
type PendingInfo struct {
	ID       string    `json:"id"`
	Issuer   string    `json:"issuer"`
	Agent    string    `json:"agent"`
	Delegate string    `json:"delegate,omitempty"`
	Resource string    `json:"resource"`
	Scopes   []string  `json:"scopes"`
	User     string    `json:"user,omitempty"` // the deciding user, once known
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	State    string    `json:"state"` // waiting, approved or denied
}

// Pending states as the admin API names them.
const (
	PendingWaiting  = "waiting"
	PendingApproved = "approved"
	PendingDenied   = "denied"
)

func init() {
	caddy.RegisterModule(PendingAdmin{})
}

// PendingAdmin is the admin API module admin.api.aauth_pending: it lists the deferred
// token requests of every auth server (aauth_server handler) running in this process,
// read from storage, so requests made through another instance on the same storage are
// listed too.
//
//	GET /aauth/pending   JSON list: id, issuer, agent, delegate, resource, scopes, user,
//	                     created, expires, state (waiting | approved | denied)
type PendingAdmin struct {
	now func() time.Time
}

// CaddyModule returns the Caddy module information.
func (PendingAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.aauth_pending", New: func() caddy.Module { return new(PendingAdmin) }}
}

// Routes returns the admin routes.
func (a *PendingAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/aauth/pending", Handler: caddy.AdminHandlerFunc(a.handleList)}}
}

func (a *PendingAdmin) handleList(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed")}
	}
	now := time.Now()
	if a.now != nil {
		now = a.now()
	}
	out := []PendingInfo{}
	for _, s := range snapshotStores() {
		list, err := s.listPending(r.Context(), now)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
		}
		out = append(out, list...)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(out)
}

// listPending returns the issuer's requests that are waiting (and not expired), or
// decided and not yet answered to the agent, newest first.
func (s *consentStore) listPending(ctx context.Context, now time.Time) ([]PendingInfo, error) {
	var out []PendingInfo
	err := s.eachStoredPending(ctx, func(rec pendingRecord) {
		state := adminState(rec, now)
		if state == "" {
			return
		}
		scopes := rec.scopes()
		if scopes == nil {
			scopes = []string{}
		}
		out = append(out, PendingInfo{
			ID: rec.ID, Issuer: s.issuer, Agent: rec.Agent, Delegate: rec.Delegate,
			Resource: rec.Resource, Scopes: scopes, User: rec.User, State: state,
			Created: time.Unix(rec.Created, 0).UTC(), Expires: time.Unix(rec.Expires, 0).UTC(),
		})
	})
	slices.SortFunc(out, func(a, b PendingInfo) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

// adminState names a record's state for the admin API; "" for a record not listed (its
// answer was collected, or it expired undecided).
func adminState(rec pendingRecord, now time.Time) string {
	switch {
	case rec.expired(now):
		return ""
	case rec.Status == statusPending:
		return PendingWaiting
	case rec.Status == statusApproved:
		return PendingApproved
	case rec.Status == statusDenied:
		return PendingDenied
	}
	return ""
}

// eachStoredPending calls fn with every well-formed pending record in storage. Records
// deleted or unreadable while the list is walked are skipped; a storage that cannot list
// the folder (other than an absent one) is an error.
func (s *consentStore) eachStoredPending(ctx context.Context, fn func(pendingRecord)) error {
	st := s.storage()
	prefix := s.layout.Dir(keystore.DirPending)
	names, err := st.List(ctx, prefix, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, key := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !strings.HasPrefix(key, prefix+"/") {
			key = prefix + "/" + key
		}
		raw, err := st.Load(ctx, key)
		if err != nil {
			continue
		}
		var rec pendingRecord
		if json.Unmarshal(raw, &rec) != nil || rec.ID == "" {
			continue
		}
		fn(rec)
	}
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*PendingAdmin)(nil)
