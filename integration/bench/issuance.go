package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// issuance measures the aauth_server's direct grants (policy default allow, file
// storage): each round first collects fresh resource tokens from the gateway's
// challenges (unmeasured), then sends the signed token requests. The first auth tokens
// feed the cached-token phase.
func (b *bench) issuance(ctx context.Context) error {
	row := &Row{Name: rowIssuance, What: "aauth_server direct grant (POST /token, file storage), tokens/s"}
	b.rep.add(row)
	return b.runPhase(ctx, b.issuancePhase(row, 0))
}

// issueTokens gets n auth tokens without measuring.
func (b *bench) issueTokens(ctx context.Context, n int) error {
	row := &Row{Name: "issue"}
	if err := b.runPhase(ctx, b.issuancePhase(row, n)); err != nil {
		return err
	}
	if len(b.issued) == 0 {
		return fmt.Errorf("no auth token issued: %s", row.FirstError)
	}
	return nil
}

func (b *bench) issuancePhase(row *Row, total int) phase {
	var mu sync.Mutex
	var round []*agent.Credential // the signer of each request of the current round
	ph := phase{row: row, addr: b.as, want: http.StatusOK, conc: b.cfg.concurrency, total: total}
	ph.batch = func(n int) ([][]byte, error) {
		rts, err := b.resourceTokens(n)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		round = make([]*agent.Credential, n)
		for i := range round {
			round[i] = b.agents[i%len(b.agents)].cred
		}
		mu.Unlock()
		now := time.Now()
		return parallel(n, func(i int) ([]byte, error) {
			return tokenRequest(b.asID+"/token", rts[i], round[i], now)
		})
	}
	ph.check = func(a answer) error {
		var tr struct {
			AuthToken string `json:"auth_token"`
		}
		if err := json.Unmarshal(a.body, &tr); err != nil || tr.AuthToken == "" {
			return errors.New("a 200 from /token without auth_token")
		}
		mu.Lock()
		defer mu.Unlock()
		if len(b.issued) < cachedTokens {
			b.issued = append(b.issued, agent.AuthToken(round[a.i].Signer, tr.AuthToken))
		}
		return nil
	}
	return ph
}

// resourceTokens collects n resource tokens: the gateway's answer to an identified
// request without an auth token (401, AAuth: require=auth-token; resource-token=…),
// the i-th for agent i mod len(b.agents).
func (b *bench) resourceTokens(n int) ([]string, error) {
	reqs, err := b.signEach(n, b.tokSite, "/token/challenge/", func(i int) *agent.Credential { return b.agents[i%len(b.agents)].cred })
	if err != nil {
		return nil, err
	}
	rts := make([]string, n)
	d := newDriver(b.tokSite, b.cfg.concurrency)
	defer d.close()
	s := d.run(context.Background(), n, fromSlice(reqs), http.StatusUnauthorized, func(a answer) error {
		c, ok := agent.ParseChallenge(a.header)
		if !ok || c.ResourceToken == "" {
			return errors.New("a 401 without a resource token")
		}
		rts[a.i] = c.ResourceToken
		return nil
	})
	if s.errs > 0 {
		return nil, fmt.Errorf("collecting resource tokens: %d of %d failed: %s", s.errs, n, s.firstErr)
	}
	return rts, nil
}
