package wire

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/dunglas/httpsfv"
)

// Challenge is the challenge header of a 401 or 202: an RFC 8941 Dictionary whose require
// member is a Token, the other values riding on it as String parameters
// (draft-hardt-aauth §6).
type Challenge struct {
	Require       string // pseudonym, identity, auth-token, interaction, approval, …
	ResourceToken string // require=auth-token: the resource token to present to the AS
	AuthServer    string // require=auth-token: the AS that issues the auth token
	Code          string // require=interaction: the interaction code
}

// plainChallenges are the challenges with a require value and no parameters,
// formatted in advance: the 401s that refuse a request before anything is minted.
var plainChallenges = map[Challenge]string{
	{Require: RequirePseudonym}:   "require=" + RequirePseudonym,
	{Require: RequireIdentity}:    "require=" + RequireIdentity,
	{Require: RequireAuthToken}:   "require=" + RequireAuthToken,
	{Require: RequireInteraction}: "require=" + RequireInteraction,
	{Require: RequireApproval}:    "require=" + RequireApproval,
}

// params lists the String parameters of a challenge, in the order they are written.
func (c *Challenge) params() []struct {
	name string
	dst  *string
} {
	return []struct {
		name string
		dst  *string
	}{{"resource-token", &c.ResourceToken}, {"auth-server", &c.AuthServer}, {"code", &c.Code}}
}

// Format serialises c as a header value: require as an RFC 8941 Token (RFC 8941 §3.3.4),
// each non-empty parameter as a String (§3.3.3, quoted and escaped by httpsfv). Parameters
// are separated by "; " (§3.1.2 allows the space), which is how this module has always
// written them.
func (c Challenge) Format() (string, error) {
	if v, ok := plainChallenges[c]; ok {
		return v, nil // the most frequent answers, formatted once
	}
	tok, err := httpsfv.Marshal(httpsfv.NewItem(httpsfv.Token(c.Require)))
	if err != nil || c.Require == "" {
		return "", errors.New("wire: challenge require must be an RFC 8941 token")
	}
	var b strings.Builder
	b.WriteString("require=")
	b.WriteString(tok)
	for _, p := range c.params() {
		if *p.dst == "" {
			continue
		}
		v, err := httpsfv.Marshal(httpsfv.NewItem(*p.dst))
		if err != nil {
			return "", errors.New("wire: challenge " + p.name + " is not an RFC 8941 string (printable ASCII only)")
		}
		b.WriteString("; ")
		b.WriteString(p.name)
		b.WriteByte('=')
		b.WriteString(v)
	}
	return b.String(), nil
}

// SetChallenge writes c into h under this wire's challenge header, with the header
// name's exact spelling (Go would canonicalise "AAuth" to "Aauth" on HTTP/1.1).
func (w *Wire) SetChallenge(h http.Header, c Challenge) error {
	v, err := c.Format()
	if err != nil {
		return err
	}
	h[w.ChallengeHeader] = []string{v}
	return nil
}

// SetUnauthorized writes the fields of a 401 carrying c: the challenge (SetChallenge)
// and WWW-Authenticate naming the AAuth scheme (RFC 9110 §11.6.1 requires it on a 401),
// both from one allocation, as a refusal may be answered to a flood.
func (w *Wire) SetUnauthorized(h http.Header, c Challenge) error {
	v, err := c.Format()
	if err != nil {
		return err
	}
	vals := []string{v, "AAuth"}
	h[w.ChallengeHeader] = vals[0:1:1]
	h["Www-Authenticate"] = vals[1:2:2] // canonical spelling: Set would allocate it
	return nil
}

// ParseChallenge reads this wire's challenge header. ok is false when the header is
// absent or malformed, so callers treat such a response as a plain 401 instead of
// acting on half-understood input.
func (w *Wire) ParseChallenge(h http.Header) (Challenge, bool) {
	// Responses read off the wire arrive canonicalised; a hand-built header (a test
	// recorder, a proxy) may carry the exact spelling. Accept both. Build a new slice:
	// appending to h.Values would write into the header map's array.
	var vs []string
	vs = append(vs, h.Values(w.ChallengeHeader)...)
	if canon := http.CanonicalHeaderKey(w.ChallengeHeader); canon != w.ChallengeHeader {
		vs = append(vs, h[w.ChallengeHeader]...)
	}
	return ParseChallengeValues(vs)
}

// ParseChallengeValues parses the field lines of a challenge header as one RFC 8941
// Dictionary (§4.2; several lines are combined as §4.2 says). Members other than require
// and unknown parameters are ignored; a known parameter that is not a String makes the
// whole challenge malformed.
func ParseChallengeValues(vs []string) (Challenge, bool) {
	if len(vs) == 0 {
		return Challenge{}, false
	}
	d, err := httpsfv.UnmarshalDictionary(vs)
	if err != nil {
		return Challenge{}, false
	}
	m, ok := d.Get("require")
	if !ok {
		return Challenge{}, false
	}
	item, ok := m.(httpsfv.Item)
	if !ok {
		return Challenge{}, false
	}
	tok, ok := item.Value.(httpsfv.Token)
	if !ok || tok == "" {
		return Challenge{}, false
	}
	c := Challenge{Require: string(tok)}
	for _, p := range c.params() {
		v, present := item.Params.Get(p.name)
		if !present {
			continue
		}
		s, isString := v.(string)
		if !isString {
			return Challenge{}, false
		}
		*p.dst = s
	}
	return c, true
}

// Summary describes c for logs without printing the resource token: only its typ (and,
// with tokenLength, its length in bytes) is shown.
func (c Challenge) Summary(tokenLength bool) string {
	s := "require=" + c.Require
	if c.AuthServer != "" {
		s += ", auth-server=" + c.AuthServer
	}
	if c.ResourceToken != "" {
		typ := TokenType(c.ResourceToken)
		if typ == "" {
			typ = "unknown"
		}
		s += ", resource-token of typ " + typ
		if tokenLength {
			s += " (" + strconv.Itoa(len(c.ResourceToken)) + " bytes)"
		}
	}
	if c.Code != "" {
		s += ", code=" + c.Code
	}
	return s
}
