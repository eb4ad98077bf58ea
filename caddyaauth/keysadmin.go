package caddyaauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

func init() {
	caddy.RegisterModule(KeysAdmin{})
}

// KeysAdmin is the admin API module admin.api.aauth_keys: it lists and rotates the
// signing keyrings of every aauth and aauth_server handler running in this process.
//
//	GET  /aauth/keys          JSON list, one entry per key: owner, role, kid, alg,
//	                          state (next|active|retired), created, activates, retires
//	POST /aauth/keys/rotate   optional body {"owner": "<id>"}: rotate that owner's
//	                          keyrings (every keyring without it); 200 with the list
//	                          after rotation, 404 when no keyring has that owner
//
// A rotation writes the keyring in storage, so every instance sharing the storage
// publishes the new key (within a quarter of the publish delay) and signs with it once
// it activates. Each rotation emits aauth_key_rotated.
type KeysAdmin struct{}

// CaddyModule returns the Caddy module information.
func (KeysAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.aauth_keys", New: func() caddy.Module { return new(KeysAdmin) }}
}

// Routes returns the admin routes.
func (a *KeysAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/aauth/keys", Handler: caddy.AdminHandlerFunc(a.handleList)},
		{Pattern: "/aauth/keys/rotate", Handler: caddy.AdminHandlerFunc(a.handleRotate)},
	}
}

func (a *KeysAdmin) handleList(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed")}
	}
	return writeKeyList(w, r)
}

// rotateRequest is the optional body of POST /aauth/keys/rotate.
type rotateRequest struct {
	Owner string `json:"owner"`
}

func (a *KeysAdmin) handleRotate(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed")}
	}
	var req rotateRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("body: want {\"owner\": \"<id>\"}: %w", err)}
		}
	}
	var matched []*keystore.Key
	for _, k := range keystore.Registered() {
		if req.Owner == "" || k.Owner() == req.Owner {
			matched = append(matched, k)
		}
	}
	if len(matched) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no keyring of owner %q in this process", req.Owner)}
	}
	for _, k := range matched {
		if _, err := k.Rotate(r.Context()); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("rotating the %s key of %s: %w", k.Role(), k.Owner(), err)}
		}
	}
	return writeKeyList(w, r)
}

// writeKeyList answers the keys of every keyring in this process.
func writeKeyList(w http.ResponseWriter, r *http.Request) error {
	out := []keystore.Info{}
	for _, k := range keystore.Registered() {
		infos, err := k.Infos(r.Context())
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("the %s key of %s: %w", k.Role(), k.Owner(), err)}
		}
		out = append(out, infos...)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(out)
}

// Interface guards
var _ caddy.AdminRouter = (*KeysAdmin)(nil)
