// Package wire is the HTTP-level vocabulary of AAuth (draft-hardt-aauth) shared by the
// gateway, the auth server, the agent library, its test fakes and the aauth command:
// error codes and the JSON error body, the challenge header (format and parse, RFC 8941
// Structured Fields), the token, resource token and pending (202) responses, the three
// metadata documents, the JWT typ values, a typ peek and the scope syntax (RFC 6749
// §3.3). It has no Caddy imports.
//
// What differs between revisions of the draft (the challenge header's name, the typ
// strings) is held in a Wire value rather than in constants spread over the handlers, so
// a later revision can stand beside Seed and be chosen per request. Seed is the wire this
// module speaks today: header AAuth, typs agent+jwt, resource+jwt and auth+jwt, and the
// {"error", "error_description"} body of RFC 6749 §5.2.
package wire

// Wire is one revision of the AAuth wire: the names and strings that differ between
// revisions. Its methods format and parse what depends on them.
type Wire struct {
	// Name identifies the revision in logs and configuration.
	Name string
	// ChallengeHeader is the response header field carrying a challenge
	// (draft-hardt-aauth §6: AAuth in the 2026-03 revision).
	ChallengeHeader string
	// TypAgent, TypResource and TypAuth are the JOSE typ header values (RFC 7515 §4.1.9)
	// of agent, resource and auth tokens.
	TypAgent, TypResource, TypAuth string
}

// Seed is the wire this module speaks: draft-hardt-aauth as of March 2026 (header AAuth
// with require=, typs agent+jwt, resource+jwt and auth+jwt), the revision its tests,
// golden files and the draft's Python reference implementation agree on. The name is
// historical: it is the first revision this module implemented.
var Seed = &Wire{
	Name:            "aauth-2026-03",
	ChallengeHeader: HeaderAAuth,
	TypAgent:        TypAgent,
	TypResource:     TypResource,
	TypAuth:         TypAuth,
}

// Names of the Seed wire, for code (and constants elsewhere) that needs them at compile
// time.
const (
	HeaderAAuth = "AAuth"
	TypAgent    = "agent+jwt"
	TypResource = "resource+jwt"
	TypAuth     = "auth+jwt"
)

// Values of the challenge's require member (draft-hardt-aauth §6).
const (
	RequirePseudonym   = "pseudonym"
	RequireIdentity    = "identity"
	RequireAuthToken   = "auth-token"
	RequireInteraction = "interaction"
	RequireApproval    = "approval"
)
