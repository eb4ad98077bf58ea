package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// exampleTB lets the examples start agenttest's fake gateway and auth server, which
// take a testing.TB, outside a test: it collects their cleanups and panics on failure.
// In a test, pass its *testing.T instead.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (e *exampleTB) Helper()                   {}
func (e *exampleTB) Cleanup(f func())          { e.cleanups = append(e.cleanups, f) }
func (e *exampleTB) Fatal(a ...any)            { panic(fmt.Sprint(a...)) }
func (e *exampleTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (e *exampleTB) Errorf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (e *exampleTB) Logf(string, ...any)       {}

// close runs the cleanups, last first.
func (e *exampleTB) close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}

// startAgentServer serves agent.Server for signer on a loopback port and returns the
// agent identifier (http://127.0.0.1:PORT, accepted by resources in dev mode only).
func startAgentServer(signer *keys.Signer, delegateSecret string) (id string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	id = "http://" + ln.Addr().String()
	srv := &agent.Server{Signer: signer, ID: id, DelegateSecret: delegateSecret}
	if err := srv.Validate(); err != nil {
		log.Fatal(err)
	}
	ts := &httptest.Server{Listener: ln, Config: &http.Server{Handler: srv}}
	ts.Start()
	return id, ts.Close
}

// A pseudonymous agent: every request is signed with a throw-away key sent inline in
// Signature-Key (scheme hwk). The resource here only shows what it received.
func ExampleTransport() {
	resource := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		input := r.Header.Get("Signature-Input")
		covered := input[strings.Index(input, "(")+1 : strings.Index(input, ")")]
		fmt.Fprintf(w, "covered: %s\nhwk key: %t\n", covered,
			strings.Contains(r.Header.Get("Signature-Key"), "scheme=hwk"))
	}))
	defer resource.Close()

	signer, err := keys.Generate(keys.AlgEd25519, "")
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: &agent.Transport{Pseudonym: agent.HWK(signer)}}
	resp, err := client.Get(resource.URL + "/hello?lang=en")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output:
	// covered: "@method" "@authority" "@path" "@query" "signature-key"
	// hwk key: true
}

// An identified agent on a route that requires an auth token: the transport follows the
// resource's challenge to the auth server, checks the auth token it gets, retries once
// with it and keeps it for later requests. agenttest's fake gateway and auth server stand
// in for an aauth route and an aauth_server; the agent publishes its keys with
// agent.Server.
func ExampleTransport_authToken() {
	tb := &exampleTB{}
	defer tb.close()
	authServer := agenttest.NewAuthServer(tb)
	gateway := agenttest.NewGateway(tb, authServer.ID, "data.read")

	signer, err := keys.Generate(keys.AlgEd25519, "key-1")
	if err != nil {
		log.Fatal(err)
	}
	agentID, stop := startAgentServer(signer, "")
	defer stop()

	client := &http.Client{Transport: &agent.Transport{
		Identity: agent.JWKSURI(signer, agentID),
		Purpose:  "Read the demo data",
		Dev:      true, // http:// and loopback identifiers: local demos and tests only
	}}
	for range 2 {
		resp, err := client.Get(gateway.ID + "/data/hello")
		if err != nil {
			log.Fatal(err)
		}
		var got struct{ Agent, Scope string }
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(resp.Status, "scope:", got.Scope, "agent matches:", got.Agent == agentID)
	}
	fmt.Println("token requests:", authServer.Hits())
	fmt.Println("purpose sent:", authServer.Purposes())
	// Output:
	// 200 OK scope: data.read agent matches: true
	// 200 OK scope: data.read agent matches: true
	// token requests: 1
	// purpose sent: [Read the demo data]
}

// SelfAccessToken gets a token whose audience is the agent itself (draft-hardt-aauth
// §4.5.5); a second call for the same scope is served from the cache.
func ExampleTransport_SelfAccessToken() {
	tb := &exampleTB{}
	defer tb.close()
	authServer := agenttest.NewAuthServer(tb)

	signer, err := keys.Generate(keys.AlgEd25519, "key-1")
	if err != nil {
		log.Fatal(err)
	}
	agentID, stop := startAgentServer(signer, "")
	defer stop()

	tr := &agent.Transport{Identity: agent.JWKSURI(signer, agentID), Dev: true}
	for range 2 {
		ct, err := tr.SelfAccessToken(context.Background(), authServer.ID, "openid profile")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("audience is the agent:", ct.Resource == agentID, "scope:", ct.Scope)
	}
	fmt.Println("token requests:", authServer.Kinds())
	// Output:
	// audience is the agent: true scope: openid profile
	// audience is the agent: true scope: openid profile
	// token requests: [scope]
}

// When the auth server asks a person first (202 with an interaction code), a Poller set
// as AwaitToken shows where to approve and polls until the decision; here the fake auth
// server approves as soon as the agent reports the code.
func ExamplePoller() {
	tb := &exampleTB{}
	defer tb.close()
	authServer := agenttest.NewAuthServer(tb)
	authServer.EnableConsent(agenttest.ConsentOptions{})
	gateway := agenttest.NewGateway(tb, authServer.ID, "data.write")

	signer, err := keys.Generate(keys.AlgEd25519, "key-1")
	if err != nil {
		log.Fatal(err)
	}
	agentID, stop := startAgentServer(signer, "")
	defer stop()
	identity := agent.JWKSURI(signer, agentID)

	poller := &agent.Poller{
		Credential: identity, // the credential that signed the token request
		Dev:        true,
		OnPending: func(p *agent.PendingError) {
			// A real agent shows agent.InteractionURL(p.InteractionEndpoint, p.Code) and
			// agent.FormatCode(p.Code) to the user; the fake auth server plays the user.
			fmt.Println("waiting for consent; code has", len(p.Code), "characters")
			if err := authServer.Approve(p.Code, "alice"); err != nil {
				log.Fatal(err)
			}
		},
	}
	client := &http.Client{Transport: &agent.Transport{
		Identity:   identity,
		Dev:        true,
		AwaitToken: poller.Await,
	}}
	resp, err := client.Get(gateway.ID + "/write/report")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// waiting for consent; code has 8 characters
	// 200 OK
}

// An agent server publishes the agent's metadata and JWKS, so resources can verify its
// jwks_uri signatures, and issues agent tokens to delegates when DelegateSecret is set.
// A delegate asks for one with RequestDelegateToken and signs with its own key.
func ExampleServer() {
	agentKey, err := keys.Generate(keys.AlgEd25519, "key-1")
	if err != nil {
		log.Fatal(err)
	}
	agentID, stop := startAgentServer(agentKey, "demo-secret")
	defer stop()

	resp, err := http.Get(agentID + "/.well-known/aauth-agent.json")
	if err != nil {
		log.Fatal(err)
	}
	var md agent.Metadata
	err = json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("agent:", md.Agent == agentID, "jwks_uri:", md.JWKSURI == agentID+"/jwks.json")

	delegateKey, err := keys.Generate(keys.AlgEd25519, "delegate-key-1")
	if err != nil {
		log.Fatal(err)
	}
	tok, expiresIn, err := agent.RequestDelegateToken(context.Background(), nil, agentID,
		"demo-secret", "worker-7", delegateKey, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(agent.TokenType(tok), expiresIn)
	delegate := &agent.Transport{Identity: agent.Delegate(delegateKey, tok)}
	_ = &http.Client{Transport: delegate} // use like any http.Client
	// Output:
	// agent: true jwks_uri: true
	// agent+jwt 3600
}

// ParseChallenge reads the AAuth header of a 401.
func ExampleParseChallenge() {
	h := http.Header{}
	h.Set("AAuth", `require=auth-token; resource-token="eyJ..."; auth-server="https://auth.example.com"`)
	c, ok := agent.ParseChallenge(h)
	fmt.Println(ok, c.Require, c.AuthServer)
	// Output: true auth-token https://auth.example.com
}

// InteractionURL and FormatCode build what to show the user for a deferred request.
func ExampleInteractionURL() {
	fmt.Println(agent.InteractionURL("https://auth.example.com/interact", "FGTD43SC"))
	fmt.Println(agent.FormatCode("FGTD43SC"))
	// Output:
	// https://auth.example.com/interact?code=FGTD43SC
	// FGTD-43SC
}
