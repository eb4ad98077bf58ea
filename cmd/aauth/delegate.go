package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

const delegateUsage = `usage: aauth delegate -server URL -key delegate.jwk [-sub delegate-1] [-secret S]
                      [-aud URL]... [-o token.jwt]

Asks the agent server at -server (started with 'aauth serve' and a delegate secret) for an
agent token (typ agent+jwt) that binds the delegate key in -key to the delegate id -sub.
The token is printed on stdout, or written to -o (mode 0600). Use it with
'aauth fetch -key delegate.jwk -agent-token token.jwt URL'. -aud (repeatable) restricts the
token to the named auth servers or resources. Prefer AAUTH_DELEGATE_SECRET over -secret.
`

func cmdDelegate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("delegate", delegateUsage, stderr)
	server := fs.String("server", "", "agent server URL (required)")
	var creds credFlags
	creds.add(fs, "delegate private JWK file (required)", "", false, false)
	keyFile := &creds.key
	sub := fs.String("sub", "delegate-1", "delegate id, stable across key rotations")
	secret := fs.String("secret", "", "delegate secret of the agent server (default $"+envDelegateSecret+")")
	var aud stringList
	fs.Var(&aud, "aud", "audience of the token (repeatable)")
	out := fs.String("o", "", "write the token to this file (mode 0600) instead of stdout")
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout, a duration such as 30s")
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(stderr, "delegate", "unexpected argument %q", pos[0])
	}
	if err := creds.resolve(fs); err != nil {
		return usageError(stderr, "delegate", "%v", err)
	}
	if *server == "" || *keyFile == "" {
		return usageError(stderr, "delegate", "-server and -key are required")
	}
	if *sub == "" {
		return usageError(stderr, "delegate", "-sub must not be empty")
	}
	if *secret == "" {
		*secret = os.Getenv(envDelegateSecret)
	}
	if *secret == "" {
		return usageError(stderr, "delegate", "no delegate secret: pass -secret or set %s", envDelegateSecret)
	}
	signer, err := loadSigner(*keyFile)
	if err != nil {
		return failf(stderr, "delegate", "%v", err)
	}
	client := &http.Client{Timeout: *timeout}
	tok, expiresIn, err := agent.RequestDelegateToken(ctx, client, *server, *secret, *sub, signer, aud)
	if err != nil {
		return failf(stderr, "delegate", "%v", err)
	}
	if *out == "" {
		fmt.Fprintln(stdout, tok)
		return exitOK
	}
	if err := writeSecret(*out, []byte(tok+"\n"), true); err != nil {
		return failf(stderr, "delegate", "%v", err)
	}
	fmt.Fprintf(stderr, "aauth delegate: wrote an agent token (typ %s, sub %s, expires in %d s) to %s\n",
		wire.TokenType(tok), *sub, expiresIn, *out)
	return exitOK
}
