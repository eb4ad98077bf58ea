package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// A resource may answer a request itself with 202 (draft-hardt-aauth §4.5.7), for
// instance a resource that must first get the user's consent for its own call to another
// resource (§4.5.8.2, interaction chaining):
//
//	HTTP/1.1 202 Accepted
//	Location: https://api1.example/.well-known/aauth-resource/pending/…
//	Retry-After: 2
//	AAuth: require=interaction; code="ABCD2345"
//
//	{"status":"pending","location":…,"require":"interaction","code":"ABCD2345",
//	 "interaction_endpoint":"https://api1.example/.well-known/aauth-resource/interact"}
//
// The user approves at {interaction_endpoint}?code=…; the agent polls the pending URL
// with GETs signed by the credential that signed the request, and the first answer that
// is not 202 is the response to the request.

// resourcePendingBody is the body of a resource's 202: the pending answer of the token
// endpoint plus where the user goes.
type resourcePendingBody struct {
	wire.PendingResponse
	InteractionEndpoint string `json:"interaction_endpoint"`
}

// AwaitResponse polls the pending URL of a resource that answered a request with 202
// (pe.AtResource, draft-hardt-aauth §4.5.7, §4.5.8.2) and returns the first answer that
// is not 202: the response to the deferred request, which the caller reads and closes.
// A 403 (denied), 408 (expired), 404 (gone) or 5xx is such an answer too: the resource
// relays what it got, so it is returned rather than turned into an error. Every poll is
// signed with cred, the credential that signed the request (the resource binds the
// pending request to its key), whatever its scheme. The user is shown the interaction
// URL through OnPending, and Prefer: wait, Retry-After, MaxDuration, OnProgress and the
// retries after transport errors work as in Await. It is meant for
// Transport.AwaitResponse.
func (p *Poller) AwaitResponse(ctx context.Context, pe *PendingError, cred *Credential) (*http.Response, error) {
	if pe == nil || !pe.AtResource {
		return nil, errors.New("agent: AwaitResponse: no request deferred by a resource")
	}
	if err := cred.Validate(); err != nil {
		return nil, err
	}
	q := *p
	q.Credential, q.relay = cred, true
	loc, err := q.checkLocation(pe)
	if err != nil {
		return nil, err
	}
	a, err := q.await(ctx, pe, loc)
	return a.resp, err
}

// resourcePending handles a 202 the resource answered to req (signed with cred; nil
// when unsigned). A 202 without an AAuth require=interaction or require=approval header
// is an ordinary answer and is returned as it is; so is one that cannot be followed
// (no Location on the resource's origin, an unsigned request, no AwaitResponse hook),
// after a log line saying why. Otherwise the interaction URL is logged and
// AwaitResponse's answer is returned in the 202's place.
func (t *Transport) resourcePending(req *http.Request, resp *http.Response, cred *Credential) (*http.Response, error) {
	c, ok := ParseChallenge(resp.Header)
	if !ok || (c.Require != RequireInteraction && c.Require != RequireApproval) {
		return resp, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil || len(b) > maxTokenResponse {
		t.logf("the resource deferred the request (202), but its answer could not be read; returning it")
		rest := resp.Body
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), rest), rest}
		return resp, nil
	}
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	pe := t.resourcePendingInfo(req, resp, b, c)
	switch {
	case pe == nil:
		t.logf("the resource deferred the request (202) without a Location on its own origin; returning the 202")
		return resp, nil
	case cred == nil:
		t.logf("the resource deferred an unsigned request (202): no key binds the pending request; returning the 202")
		return resp, nil
	}
	if link := InteractionURL(pe.InteractionEndpoint, pe.Code); link != "" {
		t.logf("the resource deferred the request (require=%s): the user approves at %s", pe.Require, link)
	} else {
		t.logf("the resource deferred the request (require=%s, code %q); pending at %s", pe.Require, pe.Code, pe.Location)
	}
	if t.AwaitResponse == nil {
		t.logf("no AwaitResponse hook; returning the 202")
		return resp, nil
	}
	resp.Body.Close()
	return t.AwaitResponse(req.Context(), pe, cred)
}

// resourcePendingInfo reads a resource's 202 (body b, challenge c) into a PendingError;
// nil when it has no Location on the origin of req.
func (t *Transport) resourcePendingInfo(req *http.Request, resp *http.Response, b []byte, c Challenge) *PendingError {
	var pb resourcePendingBody
	_ = json.Unmarshal(b, &pb)
	loc := resp.Header.Get("Location")
	if loc == "" {
		loc = pb.Location
	}
	origin := Origin(req.URL)
	lu, err := req.URL.Parse(loc)
	if loc == "" || err != nil || lu.User != nil || Origin(lu) != origin {
		return nil
	}
	lu.Fragment, lu.RawFragment = "", ""
	pe := &PendingError{AtResource: true, Origin: origin, Location: lu.String(), Require: c.Require,
		Code: clean(c.Code, 64), Resource: t.resourceID(req.URL)}
	if pe.Code == "" {
		pe.Code = clean(pb.Code, 64)
	}
	if pb.InteractionEndpoint != "" {
		if ie, err := req.URL.Parse(pb.InteractionEndpoint); err == nil {
			pe.InteractionEndpoint = ie.String()
		}
	}
	if ra := retryAfter(resp.Header); ra > 0 {
		pe.RetryAfter = ra
	}
	return pe
}
