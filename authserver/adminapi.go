package authserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// GrantInfo is a remembered grant as the admin API lists it.
type GrantInfo struct {
	ID       string   `json:"id"`
	Issuer   string   `json:"issuer"`
	User     string   `json:"user"`
	Agent    string   `json:"agent"`
	Delegate string   `json:"delegate,omitempty"`
	Resource string   `json:"resource"`
	Scopes   []string `json:"scopes"`
	// Subject is the upstream user a token exchange decision was made for (the sub its
	// tokens carry); empty for a plain decision.
	Subject string    `json:"subject,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

func init() {
	caddy.RegisterModule(GrantsAdmin{})
}

// GrantsAdmin is the admin API module admin.api.aauth_grants: it lists and revokes the
// remembered consent decisions of every auth server (aauth_server handler) running in
// this process.
//
//	GET    /aauth/grants        JSON list of live grants: id, issuer, user, agent,
//	                            delegate, resource, scopes, created, expires
//	DELETE /aauth/grants/{id}   revoke one grant (204; 404 if unknown)
type GrantsAdmin struct {
	now func() time.Time
}

// CaddyModule returns the Caddy module information.
func (GrantsAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.aauth_grants", New: func() caddy.Module { return new(GrantsAdmin) }}
}

// Routes returns the admin routes.
func (a *GrantsAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/aauth/grants", Handler: caddy.AdminHandlerFunc(a.handleList)},
		{Pattern: "/aauth/grants/", Handler: caddy.AdminHandlerFunc(a.handleRevoke)},
	}
}

func (a *GrantsAdmin) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

func (a *GrantsAdmin) handleList(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed")}
	}
	out := []GrantInfo{}
	for _, s := range snapshotStores() {
		gs, err := s.listGrants(r.Context(), "", a.clock())
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
		}
		for _, g := range gs {
			out = append(out, GrantInfo{
				ID: g.ID, Issuer: s.issuer, User: g.User, Agent: g.Agent, Delegate: g.Delegate,
				Resource: g.Resource, Scopes: g.Scopes, Subject: g.Subject,
				Created: time.Unix(g.Created, 0).UTC(), Expires: time.Unix(g.Expires, 0).UTC(),
			})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(out)
}

func (a *GrantsAdmin) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodDelete {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed")}
	}
	id := strings.TrimPrefix(r.URL.Path, "/aauth/grants/")
	for _, s := range snapshotStores() {
		ok, err := s.revokeGrant(r.Context(), id, "")
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
		}
		if ok {
			s.logger.Info("remembered grant revoked through the admin API", zap.String("grant", id))
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no such grant")}
}

// Interface guards
var _ caddy.AdminRouter = (*GrantsAdmin)(nil)
