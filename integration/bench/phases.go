package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// Row names.
const (
	rowPlain        = "plain"
	rowFloor        = "verify-floor"
	rowPlainTok     = "plain-token"
	rowPlainJWKS    = "plain-jwks"
	rowHWK          = "hwk"
	rowJWKS         = "jwks_uri"
	rowToken        = "token-cached"
	rowCold         = "token-cold"
	rowRotation     = "token-rotation"
	rowDiscovery    = "jwks_uri-discovery"
	rowIssuance     = "issuance"
	rowStatic       = "static-401"
	rowStaticSigned = "static-401-signed"
	rowGarbage      = "refused-garbage"
	rowExpired      = "refused-expired"
	rowHostile      = "hostile"
)

// cachedTokens is how many auth tokens (from the aauth_server) the cached-token phase
// cycles through.
const cachedTokens = 64

func (b *bench) phases(ctx context.Context) error {
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"routes", b.routes}, {phRotation, b.rotationPhase}, {phDiscovery, b.discoveryPhase},
		{phRefused, b.refusedPhases}, {phHostile, b.hostilePhase},
		// Last: the jti of every resource token it redeems stays in Caddy's heap for the
		// token's lifetime (about 30 MB after 2 minutes), which would lengthen each
		// garbage collection of the phases after it.
		{phIssuance, b.issuance},
	}
	for _, s := range steps {
		if s.name != "routes" && !b.cfg.has(s.name) {
			continue
		}
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("phase %s: %w", s.name, err)
		}
	}
	return nil
}

// routes runs the steady route phases, their rounds interleaved so the plain base and
// the routes compared with it see the same machine.
func (b *bench) routes(ctx context.Context) error {
	all := []struct {
		name string
		make func(context.Context) (phase, error)
	}{
		{phPlain, b.plainPhase}, {phPlain, b.floorPhase}, {phHWK, b.hwkPhase}, {phJWKS, b.plainJWKSPhase}, {phJWKS, b.jwksPhase}, {phToken, b.plainTokenPhase}, {phToken, b.tokenPhase}, {phCold, b.coldPhase},
	}
	var phs []phase
	for _, p := range all {
		if !b.cfg.has(p.name) {
			continue
		}
		ph, err := p.make(ctx)
		if err != nil {
			return err
		}
		if ph.row == nil {
			continue
		}
		b.rep.add(ph.row)
		phs = append(phs, ph)
	}
	if len(phs) == 0 {
		return nil
	}
	return b.runPhases(ctx, phs...)
}

// path is a fresh request path under prefix: every signature differs even when a key
// signs twice in the same second (Ed25519 is deterministic).
func (b *bench) path(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, b.seq.Add(1))
}

// signEach signs n GETs of prefix on the gateway site addr, the i-th with cred(i).
func (b *bench) signEach(n int, addr, prefix string, cred func(i int) *agent.Credential) ([][]byte, error) {
	now := time.Now()
	return parallel(n, func(i int) ([]byte, error) {
		return signedGET(addr, b.path(prefix), cred(i), now)
	})
}

func (b *bench) steady(row *Row, addr string, batch func(n int) ([][]byte, error)) phase {
	return phase{row: row, addr: addr, want: http.StatusOK, conc: b.cfg.concurrency, warm: 4 * b.cfg.concurrency, batch: batch}
}

// hwkBatch signs hwk requests with a few pseudonymous keys, reused as agents do.
func (b *bench) hwkBatch() func(n int) ([][]byte, error) {
	creds := make([]*agent.Credential, 64)
	for i := range creds {
		s, _ := keys.Generate(keys.AlgEd25519, "")
		creds[i] = agent.HWK(s)
	}
	return func(n int) ([][]byte, error) {
		return b.signEach(n, b.gw, "/hwk/", func(i int) *agent.Credential { return creds[i%len(creds)] })
	}
}

// plainPhase sends the hwk phase's kind of request bytes to a server without aauth.
func (b *bench) plainPhase(context.Context) (phase, error) {
	row := &Row{Name: rowPlain, What: "reverse_proxy without aauth, fed the hwk requests' bytes"}
	return b.steady(row, b.plain, b.hwkBatch()), nil
}

// floorPhase sends the same bytes to a route that does one Ed25519 verify in Caddy and
// then the plain route's reverse_proxy: its cost over plain is one verify where the
// aauth routes run (absent when measuring another Caddy binary, which lacks the module).
func (b *bench) floorPhase(context.Context) (phase, error) {
	if b.cfg.caddyBin != "" {
		return phase{}, nil
	}
	row := &Row{Name: rowFloor, Base: rowPlain, What: "plain + one Ed25519 verify in Caddy (a test handler): the floor, one verify in place"}
	return b.steady(row, b.floorSite, b.hwkBatch()), nil
}

func (b *bench) hwkPhase(context.Context) (phase, error) {
	row := &Row{Name: rowHWK, Base: rowPlain, What: "require pseudonym, scheme hwk (64 keys)"}
	return b.steady(row, b.gw, b.hwkBatch()), nil
}

func (b *bench) jwksPhase(context.Context) (phase, error) {
	row := &Row{Name: rowJWKS, Base: rowPlainJWKS, What: fmt.Sprintf("require identity, scheme jwks_uri, keys cached (%d agents)", len(b.agents))}
	return b.steady(row, b.jwksSite, b.jwksBatch()), nil
}

// plainJWKSPhase sends the jwks_uri phase's kind of request bytes (a Signature-Key that
// names the agent instead of carrying its key) to the server without aauth: the base of
// the jwks_uri row, fed the very same bytes.
func (b *bench) plainJWKSPhase(context.Context) (phase, error) {
	row := &Row{Name: rowPlainJWKS, What: "reverse_proxy without aauth, fed the jwks_uri requests' bytes"}
	return b.steady(row, b.plain, b.jwksBatch()), nil
}

func (b *bench) jwksBatch() func(n int) ([][]byte, error) {
	return func(n int) ([][]byte, error) {
		return b.signEach(n, b.jwksSite, "/jwks/", func(i int) *agent.Credential { return b.agents[i%len(b.agents)].cred })
	}
}

func (b *bench) tokenPhase(ctx context.Context) (phase, error) {
	if err := b.ensureIssued(ctx); err != nil {
		return phase{}, err
	}
	row := &Row{Name: rowToken, Base: rowPlainTok, What: fmt.Sprintf("require auth-token, token cached (%d tokens from the aauth_server)", len(b.issued))}
	return b.steady(row, b.tokSite, b.tokenBatch()), nil
}

// plainTokenPhase sends the cached-token phase's kind of request bytes (an auth token in
// Signature-Key makes them far larger than hwk's) to the server without aauth: the base
// of the token rows, which must be fed the very same bytes.
func (b *bench) plainTokenPhase(ctx context.Context) (phase, error) {
	if err := b.ensureIssued(ctx); err != nil {
		return phase{}, err
	}
	row := &Row{Name: rowPlainTok, What: "reverse_proxy without aauth, fed the token-cached requests' bytes"}
	return b.steady(row, b.plain, b.tokenBatch()), nil
}

func (b *bench) ensureIssued(ctx context.Context) error {
	if len(b.issued) > 0 {
		return nil
	}
	b.logf("getting %d auth tokens from the aauth_server for the cached-token phase", cachedTokens)
	return b.issueTokens(ctx, cachedTokens)
}

func (b *bench) tokenBatch() func(n int) ([][]byte, error) {
	return func(n int) ([][]byte, error) {
		return b.signEach(n, b.tokSite, "/token/", func(i int) *agent.Credential { return b.issued[i%len(b.issued)] })
	}
}

// coldPhase presents a token the gateway has never seen on every request: the whole
// token check (parse, claims, the issuer's signature) besides the request signature.
func (b *bench) coldPhase(context.Context) (phase, error) {
	pool := make([]*keys.Signer, 256)
	for i := range pool {
		pool[i], _ = keys.Generate(keys.AlgEd25519, "")
	}
	row := &Row{Name: rowCold, Base: rowPlainTok, What: "require auth-token, a new token on every request (256 keys)"}
	return b.steady(row, b.coldSite, func(n int) ([][]byte, error) {
		now := time.Now()
		return parallel(n, func(i int) ([]byte, error) {
			s := pool[i%len(pool)]
			tok, err := authToken(b.issuer, b.resID, b.agents[0].id, benchScope, s, now)
			if err != nil {
				return nil, err
			}
			return signedGET(b.coldSite, b.path("/cold/"), agent.AuthToken(s, tok), now)
		})
	}), nil
}

// rotationPhase cycles once through cfg.tokens distinct tokens of distinct keys: far
// more than the route's token cache holds, so it misses and evicts throughout.
func (b *bench) rotationPhase(ctx context.Context) error {
	b.logf("minting %d auth tokens bound to %d new keys", b.cfg.tokens, b.cfg.tokens)
	holders, err := mintHolders(b.cfg.tokens, b.issuer, b.resID, b.agents[0].id, benchScope)
	if err != nil {
		return err
	}
	row := &Row{Name: rowRotation, Base: rowPlainTok, What: fmt.Sprintf("require auth-token, %d distinct tokens and keys, each once", len(holders))}
	b.rep.add(row)
	next := 0
	return b.runPhase(ctx, phase{row: row, addr: b.coldSite, want: http.StatusOK, conc: b.cfg.concurrency, total: len(holders),
		batch: func(n int) ([][]byte, error) {
			off := next
			next += n
			return b.signEach(n, b.coldSite, "/rot/", func(i int) *agent.Credential { return holders[off+i] })
		}})
}

// discoveryPhase is the first request of each of cfg.agents agents the gateway has not
// seen: it fetches the agent's metadata and JWKS from the benchmark's servers.
func (b *bench) discoveryPhase(ctx context.Context) error {
	row := &Row{Name: rowDiscovery, Base: rowPlain, What: fmt.Sprintf("first request of a new jwks_uri agent (%d agents, 4 at a time)", len(b.newAgents))}
	b.rep.add(row)
	next := 0
	return b.runPhase(ctx, phase{row: row, addr: b.jwksSite, want: http.StatusOK, conc: min(4, b.cfg.concurrency), total: len(b.newAgents),
		batch: func(n int) ([][]byte, error) {
			off := next
			next += n
			return b.signEach(n, b.jwksSite, "/jwks/", func(i int) *agent.Credential { return b.newAgents[off+i].cred })
		}})
}
