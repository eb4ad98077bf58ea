package token

import "context"

// selfAccessRules are authRules without the agent claim: a self-access token's audience
// is the agent itself (draft-hardt-aauth §4.5.5), so it names no agent.
var selfAccessRules = kindRules{typ: TypAuth, name: "self-access auth token",
	audRequired: true, needAud: true, needCnf: true, needSubScope: true}

// VerifySelfAccessToken verifies an auth token the agent obtained for itself
// (draft-hardt-aauth §4.5.5: a token request with scope and no resource token): as
// VerifyAuthToken, with Options.Audience the agent's own identifier, except that the
// agent claim is not required. Whether an agent claim, when present, names the audience
// is the caller's check.
func VerifySelfAccessToken(ctx context.Context, raw string, o Options, resolve KeyResolver) (*Token, error) {
	return verify(ctx, raw, o, resolve, &selfAccessRules)
}
