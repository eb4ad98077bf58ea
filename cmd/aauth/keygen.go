package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

const keygenUsage = `usage: aauth keygen [-alg ed25519|p256] [-kid key-1] [-o agent.jwk] [-force]

Generates a signing key and writes it as a private JWK to the -o file (mode 0600; an
existing file is never overwritten unless -force is given). Prints the public JWK and its
RFC 7638 thumbprint on stdout. The kid is what resources look up in the agent's JWKS.
`

func cmdKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("keygen", keygenUsage, stderr)
	alg := fs.String("alg", "ed25519", "key algorithm: ed25519 or p256")
	kid := fs.String("kid", "key-1", "key id published in the JWKS")
	out := fs.String("o", "agent.jwk", "file to write the private JWK to")
	force := fs.Bool("force", false, "overwrite the -o file if it exists")
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(stderr, "keygen", "unexpected argument %q", pos[0])
	}
	var a string
	switch *alg {
	case "ed25519", "Ed25519", "EdDSA":
		a = keys.AlgEd25519
	case "p256", "P-256", "ES256", keys.AlgECDSAP256:
		a = keys.AlgECDSAP256
	default:
		return usageError(stderr, "keygen", "unknown -alg %q (use ed25519 or p256)", *alg)
	}
	if *out == "" {
		return usageError(stderr, "keygen", "-o must name a file")
	}
	s, err := keys.Generate(a, *kid)
	if err != nil {
		return failf(stderr, "keygen", "%v", err)
	}
	priv, err := s.MarshalPrivateJWK()
	if err != nil {
		return failf(stderr, "keygen", "%v", err)
	}
	if err := writeSecret(*out, append(priv, '\n'), *force); err != nil {
		return failf(stderr, "keygen", "%v", err)
	}
	pub, err := json.Marshal(s.Public)
	if err != nil {
		return failf(stderr, "keygen", "%v", err)
	}
	fmt.Fprintf(stderr, "aauth keygen: wrote the private key to %s (mode 0600); keep it secret\n", *out)
	fmt.Fprintf(stdout, "%s\nthumbprint: %s\n", pub, s.Public.Thumbprint)
	return exitOK
}
