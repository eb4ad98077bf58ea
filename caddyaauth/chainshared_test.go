package caddyaauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// sharedRecord is a chained record of h as the gateway takes it: signed by agentKey,
// with an auth token, a POST with a body.
func sharedRecord(t *testing.T, h *Handler, agentKey *keys.Signer, downstream string) *chainRecord {
	t.Helper()
	signer, err := h.agentSigner(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := token.Mint(signer, token.TypAuth, token.Claims{Issuer: "https://as.example", Audience: token.Audience{h.Resource},
		ID: token.NewID(), IssuedAt: time.Now().Unix(), Expiry: time.Now().Add(time.Hour).Unix(), Agent: "https://agent.example",
		Subject: "alice", Scope: "data.write", Txn: "t1", Confirmation: &token.Confirmation{Key: agentKey.Public}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := token.Parse(raw, token.TypAuth)
	if err != nil {
		t.Fatal(err)
	}
	res := &reqverify.Result{Scheme: httpsig.SchemeJWT, Level: reqverify.LevelAuthorized, Agent: "https://agent.example",
		Key: agentKey.Public, Token: tok, TokenTyp: token.TypAuth}
	return &chainRecord{expires: time.Now().Add(time.Minute), handler: h, res: res, signer: signer,
		interaction: &egress.Interaction{Pending: &agent.PendingError{Location: downstream + "/pending/x", Code: "AS2CODE1",
			Require: "interaction", AuthServer: downstream, InteractionEndpoint: downstream + "/interact", Resource: "https://api2.example"}},
		req: requestSnapshot{method: "POST", uri: "/orders?x=1", host: "api.example", proto: "HTTP/1.1",
			header: http.Header{"Content-Type": {"application/json"}, "Authorization": {"secret"}}, body: []byte(`{"n":1}`)}}
}

// TestStoredChainRoundTrip: a record survives JSON with what the replay and the poll
// need; a record whose identity cannot be restored is refused.
func TestStoredChainRoundTrip(t *testing.T) {
	h := agentIdentityHandler(t, AgentKeyResource)
	h.server, h.fingerprint = "srv0", configFingerprint(h)
	agentKey, _ := keys.Generate(keys.AlgEd25519, "")
	rec := sharedRecord(t, h, agentKey, "http://127.0.0.1:1")
	rec.id, rec.code = "id", "CODE"
	sc, err := storeChain(rec)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(sc)
	var back storedChain
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	res, err := back.result()
	if err != nil {
		t.Fatal(err)
	}
	snap, pe := back.snapshot(), back.pending()
	switch {
	case back.Server != "srv0" || back.Resource != h.Resource || back.Route != h.fingerprint || back.Route == "":
		t.Errorf("route identity %q %q %q", back.Server, back.Resource, back.Route)
	case !res.Key.Equal(agentKey.Public) || res.Level != reqverify.LevelAuthorized || res.Agent != "https://agent.example" ||
		res.Token.Raw != rec.res.Token.Raw || res.Token.Claims.Subject != "alice" || res.Token.Claims.Expiry != rec.res.Token.Claims.Expiry:
		t.Errorf("identity %+v", res)
	case snap.method != "POST" || snap.uri != "/orders?x=1" || snap.host != "api.example" || string(snap.body) != `{"n":1}` ||
		snap.header.Get("Authorization") != "secret":
		t.Errorf("request %+v", snap)
	case *pe != *rec.interaction.Pending:
		t.Errorf("downstream %+v", pe)
	case !back.Expires.Equal(rec.expires) || back.SignerJKT != rec.signer.Public.Thumbprint:
		t.Errorf("expires %v signer %q", back.Expires, back.SignerJKT)
	}
	back.Identity.Key = json.RawMessage(`{"kty":"OKP"}`)
	if _, err := back.result(); !errors.Is(err, errChainIdentity) {
		t.Errorf("broken key: %v", err)
	}
	back.Identity.Key, back.Identity.Token = sc.Identity.Key, "not.a.token"
	if _, err := back.result(); !errors.Is(err, errChainIdentity) {
		t.Errorf("broken token: %v", err)
	}
	if _, err := storeChain(&chainRecord{handler: h}); !errors.Is(err, errChainIdentity) {
		t.Errorf("record without identity: %v", err)
	}
}

// twoChainInstances are two sharedChains on one file_system storage, each with its own
// state.Storage (its own in-process locks), as two processes have.
func twoChainInstances(t *testing.T) (*sharedChains, *sharedChains, certmagic.Storage) {
	dir := t.TempDir()
	mk := func() (*sharedChains, certmagic.Storage) {
		fs := &certmagic.FileStorage{Path: dir}
		return newSharedChains(nil, fs, fs, zap.NewNop()), fs
	}
	a, fs := mk()
	b, _ := mk()
	return a, b, fs
}

// TestSharedChainsStateMachine: a record added on a is found on b by id and by code;
// one lease at a time; only the holder releases or finishes it; after finish it is
// gone everywhere; a lease that ran out can be taken over.
func TestSharedChainsStateMachine(t *testing.T) {
	a, b, _ := twoChainInstances(t)
	ctx, now := t.Context(), time.Now()
	sc := &storedChain{Expires: now.Add(time.Minute), Resource: "https://api.example"}
	if err := a.add(ctx, sc, now); err != nil {
		t.Fatal(err)
	}
	if got, err := b.get(ctx, sc.ID); err != nil || got.Resource != sc.Resource {
		t.Fatalf("get on b: %+v %v", got, err)
	}
	typed := strings.ToLower(sc.Code[:4]) + "-" + sc.Code[4:]
	if got, err := b.byUserCode(ctx, typed, now); err != nil || got.ID != sc.ID {
		t.Fatalf("code on b: %+v %v", got, err)
	}
	if _, err := b.byUserCode(ctx, "ZZZZZZZZ", now); !errors.Is(err, errChainGone) {
		t.Fatalf("unknown code: %v", err)
	}
	if _, err := b.claim(ctx, sc.ID, "hb", now); err != nil {
		t.Fatal(err)
	}
	if _, err := a.claim(ctx, sc.ID, "ha", now); !errors.Is(err, errChainBusy) {
		t.Fatalf("second claim: %v", err)
	}
	if err := a.release(ctx, sc.ID, "ha"); err == nil {
		t.Fatal("release by a non-holder succeeded")
	}
	if err := b.release(ctx, sc.ID, "hb"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.claim(ctx, sc.ID, "ha", now); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	if err := b.finish(ctx, sc, "hb"); !errors.Is(err, errChainGone) {
		t.Fatalf("finish by a non-holder: %v", err)
	}
	// a's lease runs out (its instance died): b takes over and ends the record.
	later := now.Add(chainLease + time.Second)
	if _, err := b.claim(ctx, sc.ID, "hb", later); err != nil {
		t.Fatalf("take over an expired lease: %v", err)
	}
	if err := a.finish(ctx, sc, "ha"); !errors.Is(err, errChainGone) {
		t.Fatalf("finish after losing the lease: %v", err)
	}
	if err := b.finish(ctx, sc, "hb"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*sharedChains{a, b} {
		if _, err := s.get(ctx, sc.ID); !errors.Is(err, errChainGone) {
			t.Errorf("get after finish: %v", err)
		}
		if _, err := s.byUserCode(ctx, sc.Code, now); !errors.Is(err, errChainGone) {
			t.Errorf("code after finish: %v", err)
		}
		if _, err := s.claim(ctx, sc.ID, "hx", now); !errors.Is(err, errChainGone) {
			t.Errorf("claim after finish: %v", err)
		}
	}
}

// TestSharedChainsOneClaimWins: 20 claims at once, split over two instances: exactly one
// lease.
func TestSharedChainsOneClaimWins(t *testing.T) {
	a, b, _ := twoChainInstances(t)
	now := time.Now()
	for trial := range 5 {
		sc := &storedChain{Expires: now.Add(time.Minute)}
		if err := a.add(t.Context(), sc, now); err != nil {
			t.Fatal(err)
		}
		var won, busy atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			s := []*sharedChains{a, b}[i%2]
			wg.Go(func() {
				_, err := s.claim(t.Context(), sc.ID, holderName(i), now)
				switch {
				case err == nil:
					won.Add(1)
				case errors.Is(err, errChainBusy):
					busy.Add(1)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 || busy.Load() != 19 {
			t.Errorf("trial %d: %d leases, %d busy", trial, won.Load(), busy.Load())
		}
	}
}

func holderName(i int) string { return "holder" + string(rune('a'+i)) }

// TestSharedChainsSweep: the sweeper deletes expired records and codes, and keeps a live
// record and an expired one a poll still holds.
func TestSharedChainsSweep(t *testing.T) {
	a, _, _ := twoChainInstances(t)
	ctx, now := t.Context(), time.Now()
	live := &storedChain{Expires: now.Add(time.Hour)}
	dead := &storedChain{Expires: now.Add(time.Minute)}
	held := &storedChain{Expires: now.Add(time.Minute)}
	for _, sc := range []*storedChain{live, dead, held} {
		if err := a.add(ctx, sc, now); err != nil {
			t.Fatal(err)
		}
	}
	later := now.Add(2 * time.Minute)
	if _, err := a.claim(ctx, held.ID, "h", later); err != nil {
		t.Fatal(err)
	}
	a.sweep(ctx, later.Add(time.Second))
	if _, err := a.get(ctx, dead.ID); !errors.Is(err, errChainGone) {
		t.Errorf("expired record kept: %v", err)
	}
	if _, err := a.st.Load(ctx, chainCodeKey(dead.Code)); err == nil {
		t.Error("expired code kept")
	}
	for _, sc := range []*storedChain{live, held} {
		if _, err := a.get(ctx, sc.ID); err != nil {
			t.Errorf("record deleted: %v", err)
		}
	}
	if _, err := a.byUserCode(ctx, live.Code, later); err != nil {
		t.Errorf("live code: %v", err)
	}
}

// sharedChainInstance is instance i of a cluster: an egress route of the same config
// (same server name, resource, fingerprint and agent key) on shared chains.
func sharedChainInstance(t *testing.T, shared *sharedChains, like *Handler) *Handler {
	t.Helper()
	h := &Handler{Require: RequireAuthToken, Resource: "https://api.example", AuthServer: "https://as.example",
		AgentIdentity: AgentKeyResource, Egress: true}
	if like != nil {
		h.key, h.agentKey = like.key, like.agentKey
	} else {
		h = agentIdentityHandler(t, AgentKeyResource)
		h.Egress = true
	}
	h.now, h.logger, h.server, h.fingerprint = time.Now, zap.NewNop(), "srv0", configFingerprint(h)
	h.app = &App{Dev: true, reg: &registry{guards: map[*caddyhttp.Server]*serverGuard{}, resources: map[string][]*Handler{}}, chainShared: shared}
	h.app.registerResource(h)
	h.verifier = &reqverify.Verifier{Discovery: discovery.New(discovery.Config{Dev: true}), Limits: httpsig.DefaultLimits,
		Now: time.Now, Tokens: token.NewCache(10)}
	t.Cleanup(h.verifier.Discovery.Close)
	h.app.discovery = h.verifier.Discovery
	return h
}

// signedGet is a GET of path on api.example signed (hwk) by s.
func signedGet(t *testing.T, s *keys.Signer, path string) *http.Request {
	t.Helper()
	req := httptest.NewRequest("GET", "https://api.example"+path, nil)
	key := httpsig.SigKey{Scheme: httpsig.SchemeHWK}
	for _, k := range []string{"kty", "crv", "x"} {
		key.Params = append(key.Params, httpsig.Param{Name: k, Value: s.Public.Members()[k].(string)})
	}
	if err := httpsig.Sign(req, s, key, httpsig.SignOptions{Nonce: httpsig.NewNonce()}); err != nil {
		t.Fatal(err)
	}
	return caddyhttp.PrepareRequest(req, caddy.NewReplacer(), httptest.NewRecorder(), nil)
}

// TestSharedChainEndpoints: a chained request recorded by instance a is redirected and
// polled on instance b: a poll signed by another key is refused, the agent's poll waits
// (202) while the downstream auth server does, and its denial is the one terminal
// answer, after which both instances answer 404; unknown ids are 404 and wrong codes are
// limited on b.
func TestSharedChainEndpoints(t *testing.T) {
	sa, sb, _ := twoChainInstances(t)
	var outcome atomic.Value
	outcome.Store("pending")
	as2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if outcome.Load() == "denied" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"denied"}`))
			return
		}
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"status":"pending"}`))
	}))
	defer as2.Close()
	ha := sharedChainInstance(t, sa, nil)
	hb := sharedChainInstance(t, sb, ha)
	agentKey, _ := keys.Generate(keys.AlgEd25519, "")
	rec := sharedRecord(t, ha, agentKey, as2.URL)
	if err := ha.app.egressState().addChain(t.Context(), rec, time.Now()); err != nil {
		t.Fatal(err)
	}
	serveOn := func(h *Handler, r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		if served, err := h.serveWellKnownPath(w, r); !served || err != nil {
			t.Fatalf("%s: served %v err %v", r.URL, served, err)
		}
		return w
	}
	if w := serveOn(hb, httptest.NewRequest("GET", "https://api.example"+PathChainInteract+"?code="+rec.code, nil)); w.Code != http.StatusSeeOther ||
		w.Header().Get("Location") != as2.URL+"/interact?code=AS2CODE1" {
		t.Fatalf("interact on b: %d %v", w.Code, w.Header())
	}
	other, _ := keys.Generate(keys.AlgEd25519, "")
	if w := serveOn(hb, signedGet(t, other, PathChainPending+rec.id)); w.Code != http.StatusForbidden {
		t.Fatalf("poll signed by another key: %d %s", w.Code, w.Body)
	}
	if w := serveOn(hb, signedGet(t, agentKey, PathChainPending+"AAAAAAAAAAAAAAAAAAAAAA")); w.Code != http.StatusNotFound {
		t.Fatalf("unknown id: %d", w.Code)
	}
	if w := serveOn(hb, signedGet(t, agentKey, PathChainPending+rec.id)); w.Code != http.StatusAccepted || w.Header().Get("Location") != ha.Resource+PathChainPending+rec.id {
		t.Fatalf("poll while the downstream waits: %d %v %s", w.Code, w.Header(), w.Body)
	}
	outcome.Store("denied")
	if w := serveOn(ha, signedGet(t, agentKey, PathChainPending+rec.id)); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), `"denied"`) {
		t.Fatalf("poll after the denial (lease released by b): %d %s", w.Code, w.Body)
	}
	for _, h := range []*Handler{ha, hb} {
		if w := serveOn(h, signedGet(t, agentKey, PathChainPending+rec.id)); w.Code != http.StatusNotFound {
			t.Errorf("poll after the terminal answer: %d", w.Code)
		}
	}
	for range chainWrongCodes {
		serveOn(hb, httptest.NewRequest("GET", "https://api.example"+PathChainInteract+"?code=ZZZZZZZZ", nil))
	}
	if w := serveOn(hb, httptest.NewRequest("GET", "https://api.example"+PathChainInteract+"?code="+rec.code, nil)); w.Code != http.StatusTooManyRequests {
		t.Fatalf("after %d wrong codes: %d", chainWrongCodes, w.Code)
	}
}
