package caddyaauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// errorRoutesRequest is a request of a server whose error routes are routes.
func errorRoutesRequest(routes caddyhttp.RouteList) (*http.Request, *caddy.Replacer, *httptest.ResponseRecorder) {
	srv := &caddyhttp.Server{}
	if routes != nil {
		srv.Errors = &caddyhttp.HTTPErrorConfig{Routes: routes}
	}
	repl := caddy.NewReplacer()
	w := httptest.NewRecorder()
	return caddyhttp.PrepareRequest(httptest.NewRequest("GET", "http://api.example/x", nil), repl, w, srv), repl, w
}

// TestAnswerError: without error routes, or with error routes of which none would run
// (only an empty subroute), the JSON body is written and no http.error placeholder is
// left behind; with a route holding a handler the refusal is returned as a Caddy error
// with its status.
func TestAnswerError(t *testing.T) {
	e := wire.Error{Code: wire.CodeInvalidRequest, Description: "request is not signed"}
	empty := caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{}}}}
	for name, routes := range map[string]caddyhttp.RouteList{"none": nil, "empty subroute": empty} {
		r, repl, w := errorRoutesRequest(routes)
		if err := answerError(serverOf(r), w, r, http.StatusUnauthorized, e); err != nil || w.Code != http.StatusUnauthorized || w.Body.Len() == 0 {
			t.Errorf("%s: err %v, status %d, body %q", name, err, w.Code, w.Body)
		}
		if _, ok := repl.Get("http.error.status_code"); ok {
			t.Errorf("%s: http.error.status_code left set", name)
		}
	}
	handled := caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{
		Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.StaticResponse{}}}},
	}}}}
	r, _, w := errorRoutesRequest(handled)
	err := answerError(serverOf(r), w, r, http.StatusUnauthorized, e)
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized || w.Body.Len() != 0 {
		t.Fatalf("err %v, body %q", err, w.Body)
	}
	if he.Err.Error() != "invalid_request: request is not signed" {
		t.Errorf("message %q", he.Err.Error())
	}
}

// TestAnswerErrorInsideErrorRoutes: a refusal made while the error routes run (an aauth
// handler in handle_errors) is answered with the JSON body: returned as an error there,
// Caddy would answer the first error's status with an empty body.
func TestAnswerErrorInsideErrorRoutes(t *testing.T) {
	handled := caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.StaticResponse{}}}}
	r, _, w := errorRoutesRequest(handled)
	r = (&caddyhttp.HTTPErrorConfig{}).WithError(r, caddyhttp.Error(http.StatusBadGateway, errors.New("upstream down")))
	e := wire.Error{Code: wire.CodeInvalidRequest, Description: "request is not signed"}
	if err := answerError(serverOf(r), w, r, http.StatusUnauthorized, e); err != nil || w.Code != http.StatusUnauthorized || w.Body.Len() == 0 {
		t.Fatalf("err %v, status %d, body %q: want the 401 written", err, w.Code, w.Body)
	}
}
