package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/net/publicsuffix"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// Fair shares of the undecided (pending, unexpired) consent requests an issuer holds.
// Every undecided request keeps a record in storage and a place in the user's queue, so
// the auth server bounds them, and it bounds them per party so that one party cannot
// take the whole pool and starve everyone else (the token endpoint answers 429 with
// Retry-After past a bound):
//
//   - 64 per agent identifier;
//   - 512 per agent domain: all agents whose host has the same registrable domain
//     (eTLD+1 from the Public Suffix List, private section included, so a.github.io and
//     b.github.io are different domains; an IP address or a single-label host such as
//     localhost is its own domain). Minting many cheap agent identifiers under one
//     domain therefore gets at most 512;
//   - 2,500 per resource (the resource token's iss), so requests for one resource (which
//     may be run by the same party as the agent) take at most a quarter;
//   - 10,000 in all; of these the last 2,000 are kept for agent domains that hold fewer
//     than 16, so parties with a few requests still get in while large ones are at
//     their share.
//
// A place is taken (atomically, under one lock) before the resource token's jti is spent
// and given back when the request is decided, when it expires, or when it could not be
// stored. The counts are per process: they are rebuilt from the pending records in
// storage when the issuer's store is first loaded (a restart), and kept across config
// reloads with the store. Instances sharing storage each count their own requests.
const (
	maxPendingPerAgent    = 64
	maxPendingPerDomain   = 512
	maxPendingPerResource = 2500
	maxPendingTotal       = 10000
	pendingReserve        = 2000 // of maxPendingTotal, only for small agent domains
	smallDomainPending    = 16   // "small": fewer than this many undecided requests
)

// errTooManyPending refuses a new pending request over the bounds above.
var errTooManyPending = errors.New("too many undecided requests")

// admission is the place an undecided request holds in the counts.
type admission struct {
	agent, domain, resource string
	exp                     int64
}

// admissions counts undecided requests by agent, agent domain and resource.
type admissions struct {
	mu       sync.Mutex
	nextExp  int64 // no place expires before this (0: none held)
	byID     map[string]admission
	agent    map[string]int
	domain   map[string]int
	resource map[string]int
}

func newAdmissions() *admissions {
	return &admissions{
		byID:     map[string]admission{},
		agent:    map[string]int{},
		domain:   map[string]int{},
		resource: map[string]int{},
	}
}

// agentDomain groups an agent identifier by the registrable domain of its host.
func agentDomain(agent string) string {
	u, err := url.Parse(agent)
	if err != nil {
		return agent
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return agent
	}
	if net.ParseIP(host) != nil || !strings.Contains(host, ".") {
		return host
	}
	if d, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return d
	}
	return host // the host is itself a public suffix
}

// admit takes a place for request id (expiring at exp) if every share allows it; the
// check and the count are one step, so parallel requests cannot all pass a check made
// before any of them was counted.
func (a *admissions) admit(id, agent, resource string, exp, now int64) error {
	ad := admission{agent: agent, domain: agentDomain(agent), resource: resource, exp: exp}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.byID[id]; ok {
		return nil
	}
	if !a.fitsLocked(ad) {
		a.pruneLocked(now) // expired requests still counted: drop them and look again
		if !a.fitsLocked(ad) {
			return errTooManyPending
		}
	}
	a.addLocked(id, ad)
	return nil
}

func (a *admissions) fitsLocked(ad admission) bool {
	total := len(a.byID)
	d := a.domain[ad.domain]
	switch {
	case a.agent[ad.agent] >= maxPendingPerAgent,
		d >= maxPendingPerDomain,
		a.resource[ad.resource] >= maxPendingPerResource,
		total >= maxPendingTotal,
		total >= maxPendingTotal-pendingReserve && d >= smallDomainPending:
		return false
	}
	return true
}

func (a *admissions) addLocked(id string, ad admission) {
	if a.nextExp == 0 || ad.exp < a.nextExp {
		a.nextExp = ad.exp
	}
	a.byID[id] = ad
	a.agent[ad.agent]++
	a.domain[ad.domain]++
	a.resource[ad.resource]++
}

// release gives back the place of request id (a no-op when it holds none).
func (a *admissions) release(id string) {
	a.mu.Lock()
	a.releaseLocked(id)
	a.mu.Unlock()
}

func (a *admissions) releaseLocked(id string) {
	ad, ok := a.byID[id]
	if !ok {
		return
	}
	delete(a.byID, id)
	dec(a.agent, ad.agent)
	dec(a.domain, ad.domain)
	dec(a.resource, ad.resource)
}

func dec(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

// prune gives back the places of requests that expired undecided.
func (a *admissions) prune(now int64) {
	a.mu.Lock()
	a.pruneLocked(now)
	a.mu.Unlock()
}

// pruneLocked scans only when a place may have expired, so a refused request costs O(1)
// while the pool is full of live requests.
func (a *admissions) pruneLocked(now int64) {
	if a.nextExp == 0 || now < a.nextExp {
		return
	}
	a.nextExp = 0
	for id, ad := range a.byID {
		if now >= ad.exp {
			a.releaseLocked(id)
		} else if a.nextExp == 0 || ad.exp < a.nextExp {
			a.nextExp = ad.exp
		}
	}
}

// counts returns the number of places held in all, by agent, agent domain and resource.
func (a *admissions) counts(agent, resource string) (total, byAgent, byDomain, byResource int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.byID), a.agent[agent], a.domain[agentDomain(agent)], a.resource[resource]
}

// rebuildAdmissions counts the undecided, unexpired requests found in storage (a
// restart keeps its bounds).
func (s *consentStore) rebuildAdmissions(ctx context.Context, now int64) {
	st := s.storage()
	prefix := s.layout.Dir(keystore.DirPending)
	names, err := st.List(ctx, prefix, false)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.logger.Error("listing pending requests to rebuild the bounds", zap.Error(err))
		}
		return
	}
	n := 0
	for _, key := range names {
		if ctx.Err() != nil {
			return
		}
		if !strings.HasPrefix(key, prefix+"/") {
			key = prefix + "/" + key
		}
		raw, err := st.Load(ctx, key)
		if err != nil {
			continue
		}
		var rec pendingRecord
		if json.Unmarshal(raw, &rec) != nil || rec.Status != statusPending || now >= rec.Expires || rec.ID == "" {
			continue
		}
		s.admitted.mu.Lock()
		if _, ok := s.admitted.byID[rec.ID]; !ok {
			s.admitted.addLocked(rec.ID, admission{agent: rec.Agent, domain: agentDomain(rec.Agent), resource: rec.Resource, exp: rec.Expires})
			n++
		}
		s.admitted.mu.Unlock()
	}
	if n > 0 {
		s.logger.Info("undecided requests counted from storage", zap.Int("count", n))
	}
}
