package authserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// grant is a remembered consent decision: the user approved these scopes for the agent
// at the resource, until Expires. Grants are kept per (agent, resource) in
// aauth/issuer/<safe issuer>/grants/<hex sha256(agent "\n" resource)>.json (a JSON list),
// with aauth/issuer/<safe issuer>/grants/index.json mapping grant ids to those files.
type grant struct {
	ID       string   `json:"id"`
	User     string   `json:"user"`
	Agent    string   `json:"agent"`
	Delegate string   `json:"delegate,omitempty"` // the delegate that asked
	KeyJKT   string   `json:"jkt"`                // thumbprint of the key that asked
	Resource string   `json:"resource"`
	Scopes   []string `json:"scopes"`
	Created  int64    `json:"created"`
	Expires  int64    `json:"expires"`
	// Subject is set on a decision about a token exchange made on behalf of an upstream
	// user: the upstream token's sub, which the tokens carry (draft-hardt-aauth §4.5.8).
	// Empty for a plain decision, whose tokens carry User.
	Subject string `json:"subject,omitempty"`
}

// tokenSubject is the sub of tokens issued under g.
func (g *grant) tokenSubject() string {
	if g.Subject != "" {
		return g.Subject
	}
	return g.User
}

const grantIDBytes = 16

func grantFile(agent, resource string) string {
	sum := sha256.Sum256([]byte(agent + "\n" + resource))
	return hex.EncodeToString(sum[:])
}

func (s *consentStore) grantKey(file string) string {
	return s.layout.Key(keystore.DirGrants, file+".json")
}
func (s *consentStore) grantIndexKey() string { return s.layout.Key(keystore.DirGrants, "index.json") }

// grantLock serialises grant updates across instances sharing storage (advisory, so
// accept rare races) and within the process.
func (s *consentStore) withGrantLock(ctx context.Context, fn func(st certmagic.Storage) error) error {
	s.grantsMu.Lock()
	defer s.grantsMu.Unlock()
	st := s.storage()
	name := s.layout.GrantsLock()
	if err := st.Lock(ctx, name); err != nil {
		return fmt.Errorf("locking grants: %w", err)
	}
	defer func() { _ = st.Unlock(context.Background(), name) }()
	return fn(st)
}

func (s *consentStore) loadGrants(ctx context.Context, st certmagic.Storage, file string) ([]grant, error) {
	raw, err := st.Load(ctx, s.grantKey(file))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading grants: %w", err)
	}
	var gs []grant
	if err := json.Unmarshal(raw, &gs); err != nil {
		return nil, errors.New("grants in storage are malformed")
	}
	return gs, nil
}

func (s *consentStore) loadIndex(ctx context.Context, st certmagic.Storage) (map[string]string, error) {
	raw, err := st.Load(ctx, s.grantIndexKey())
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading grant index: %w", err)
	}
	idx := map[string]string{}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, errors.New("grant index in storage is malformed")
	}
	return idx, nil
}

func (s *consentStore) storeJSON(ctx context.Context, st certmagic.Storage, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return st.Store(ctx, key, raw)
}

// grantAsker is who asks for a token: a remembered decision applies only to the same
// agent, delegate and signing key that the user approved (an agent server may run
// delegates for several people; each key stands for one of them).
type grantAsker struct {
	Agent, Delegate, KeyJKT, Resource string
}

// findGrant returns the newest live grant for asker that covers every requested scope
// and that ok accepts (its user is still allowed to consent, its subject fits).
func (s *consentStore) findGrant(ctx context.Context, asker grantAsker, scopes []string, ok func(*grant) bool, now time.Time) (*grant, error) {
	gs, err := s.loadGrants(ctx, s.storage(), grantFile(asker.Agent, asker.Resource))
	if err != nil {
		return nil, err
	}
	var best *grant
	for i := range gs {
		g := &gs[i]
		if g.Agent != asker.Agent || g.Resource != asker.Resource || g.Delegate != asker.Delegate ||
			g.KeyJKT == "" || g.KeyJKT != asker.KeyJKT || now.Unix() >= g.Expires || !ok(g) {
			continue
		}
		covers := true
		for _, sc := range scopes {
			if !slices.Contains(g.Scopes, sc) {
				covers = false
				break
			}
		}
		if covers && (best == nil || g.Created > best.Created) {
			best = g
		}
	}
	return best, nil
}

// addGrant remembers a decision. A grant of the same user for the same agent and
// resource is replaced (its scopes merged).
func (s *consentStore) addGrant(ctx context.Context, g grant) (grant, error) {
	err := s.withGrantLock(ctx, func(st certmagic.Storage) error {
		file := grantFile(g.Agent, g.Resource)
		gs, err := s.loadGrants(ctx, st, file)
		if err != nil {
			return err
		}
		idx, err := s.loadIndex(ctx, st)
		if err != nil {
			return err
		}
		out := gs[:0]
		for _, old := range gs {
			if old.User == g.User && old.Subject == g.Subject && old.KeyJKT == g.KeyJKT && old.Delegate == g.Delegate && old.Expires > g.Created {
				for _, sc := range old.Scopes {
					if !slices.Contains(g.Scopes, sc) {
						g.Scopes = append(g.Scopes, sc)
					}
				}
				delete(idx, old.ID)
				continue
			}
			if old.Expires <= g.Created {
				delete(idx, old.ID)
				continue
			}
			out = append(out, old)
		}
		sort.Strings(g.Scopes)
		g.ID = newRandomID(grantIDBytes)
		out = append(out, g)
		if err := s.storeJSON(ctx, st, s.grantKey(file), out); err != nil {
			return fmt.Errorf("storing grants: %w", err)
		}
		idx[g.ID] = file
		return s.storeJSON(ctx, st, s.grantIndexKey(), idx)
	})
	return g, err
}

// listGrants returns the live grants, optionally only those of one user, newest first.
func (s *consentStore) listGrants(ctx context.Context, user string, now time.Time) ([]grant, error) {
	st := s.storage()
	idx, err := s.loadIndex(ctx, st)
	if err != nil {
		return nil, err
	}
	files := map[string]bool{}
	for _, f := range idx {
		files[f] = true
	}
	var out []grant
	for f := range files {
		gs, err := s.loadGrants(ctx, st, f)
		if err != nil {
			return nil, err
		}
		for _, g := range gs {
			if idx[g.ID] != f || now.Unix() >= g.Expires || (user != "" && g.User != user) {
				continue
			}
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Created != out[j].Created {
			return out[i].Created > out[j].Created
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// revokeGrant deletes a grant by id; with user set, only that user's grant. It reports
// whether a grant was deleted, and emits aauth_grant_revoked when one was.
func (s *consentStore) revokeGrant(ctx context.Context, id, user string) (bool, error) {
	if !validRandomID(id, grantIDBytes) {
		return false, nil
	}
	var revoked *grant
	err := s.withGrantLock(ctx, func(st certmagic.Storage) error {
		idx, err := s.loadIndex(ctx, st)
		if err != nil {
			return err
		}
		file, ok := idx[id]
		if !ok {
			return nil
		}
		gs, err := s.loadGrants(ctx, st, file)
		if err != nil {
			return err
		}
		out := gs[:0]
		for _, g := range gs {
			if g.ID == id && (user == "" || g.User == user) {
				revoked = &g
				continue
			}
			out = append(out, g)
		}
		if revoked == nil {
			return nil
		}
		if err := s.storeJSON(ctx, st, s.grantKey(file), out); err != nil {
			return fmt.Errorf("storing grants: %w", err)
		}
		delete(idx, id)
		return s.storeJSON(ctx, st, s.grantIndexKey(), idx)
	})
	if revoked != nil && err == nil {
		s.grantRevoked(revoked)
	}
	return revoked != nil, err
}

// sweepGrants drops expired grants (from the hourly scan).
func (s *consentStore) sweepGrants(ctx context.Context, now time.Time) {
	err := s.withGrantLock(ctx, func(st certmagic.Storage) error {
		idx, err := s.loadIndex(ctx, st)
		if err != nil || len(idx) == 0 {
			return err
		}
		files := map[string]bool{}
		for _, f := range idx {
			files[f] = true
		}
		changed := false
		for f := range files {
			gs, err := s.loadGrants(ctx, st, f)
			if err != nil {
				return err
			}
			out := gs[:0]
			for _, g := range gs {
				if now.Unix() >= g.Expires {
					delete(idx, g.ID)
					changed = true
					continue
				}
				out = append(out, g)
			}
			if len(out) != len(gs) {
				if err := s.storeJSON(ctx, st, s.grantKey(f), out); err != nil {
					return err
				}
			}
		}
		if !changed {
			return nil
		}
		return s.storeJSON(ctx, st, s.grantIndexKey(), idx)
	})
	if err != nil {
		s.logger.Error("sweeping grants", zap.Error(err))
	}
}
