// Command aauth is the AAuth agent tool: it makes keys, runs an agent server that
// publishes the agent's metadata and JWKS (and issues demo agent tokens to delegates), gets
// such tokens, and fetches URLs like curl while signing requests and answering the
// resource's challenges (caddyaauth/agent does the protocol work).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// Exit statuses (the table in README.md). 22 matches curl -f for a 4xx, so scripts can
// treat both tools alike; denied, expired and 5xx have their own so a script can tell
// "ask again later" from "the answer is no".
const (
	exitOK          = 0   // success
	exitFailure     = 1   // a local error: bad file, network, timeout, cache
	exitUsage       = 2   // a usage error: unknown flag, missing argument
	exitDenied      = 3   // the user denied the request, or an HTTP 403
	exitExpired     = 4   // the request expired before anyone decided, or an HTTP 408
	exitHTTP        = 22  // any other HTTP 4xx, from the resource or the auth server
	exitServer      = 23  // an HTTP 5xx, from the resource or the auth server
	exitInterrupted = 130 // Ctrl-C (SIGINT) or SIGTERM, as shells report it
)

// envDelegateSecret keeps the delegate secret out of the process list.
const envDelegateSecret = "AAUTH_DELEGATE_SECRET"

const mainUsage = `usage: aauth <command> [flags] [args]

AAuth agent tool.

commands:
  keygen    make a signing key (private JWK file) and print its public JWK
  serve     run an agent server: metadata, JWKS and demo delegate tokens
  delegate  get an agent token for a delegate key from an agent server
  fetch     fetch a URL like curl, signing the request and answering AAuth challenges
  cache     show or clear the on-disk token cache
  version   print the version of aauth and of Go it was built with

Run 'aauth <command> -h' for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command, with its streams and exit status explicit so tests can drive
// it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run with a context; serve stops when it is cancelled (tests) as well as
// on SIGINT/SIGTERM.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "keygen":
		return cmdKeygen(rest, stdout, stderr)
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "delegate":
		return cmdDelegate(ctx, rest, stdout, stderr)
	case "fetch":
		return cmdFetch(ctx, rest, stdout, stderr)
	case "cache":
		return cmdCache(rest, stdout, stderr)
	case "version", "-version", "--version":
		return cmdVersion(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, mainUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "aauth: unknown command %q\n\n%s", cmd, mainUsage)
	return exitUsage
}

// newFlags makes a flag set whose -h output is the command's usage text followed by the
// flag defaults.
func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("aauth "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses flags anywhere on the command line (curl users put them after the
// URL) and returns the positional arguments. Everything after "--" is positional. It
// returns the exit status to use when parsing stopped: -h prints the usage; a bad flag
// gets one line and a pointer to -h, not the whole usage.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos []string
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer func() { fs.SetOutput(out); fs.Usage = usage }()
	for {
		if err := fs.Parse(args); err != nil {
			fs.SetOutput(out)
			if errors.Is(err, flag.ErrHelp) {
				usage()
				return nil, exitOK, false
			}
			cmd := strings.TrimPrefix(fs.Name(), "aauth ")
			return nil, usageError(out, cmd, "%v", err), false
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), 0, true
		}
		if len(rest) == 0 {
			return pos, 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageError prints a one-line problem and a pointer to -h.
func usageError(stderr io.Writer, cmd, format string, a ...any) int {
	fmt.Fprintf(stderr, "aauth %s: %s\nsee 'aauth %s -h'\n", cmd, fmt.Sprintf(format, a...), cmd)
	return exitUsage
}

// failf prints a one-line runtime error.
func failf(stderr io.Writer, cmd, format string, a ...any) int {
	fmt.Fprintf(stderr, "aauth %s: %s\n", cmd, fmt.Sprintf(format, a...))
	return exitFailure
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ", ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// loadSigner reads a private JWK file written by keygen.
func loadSigner(path string) (*keys.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := keys.ParsePrivateJWK(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// writeSecret writes data readable by the owner only. Without force an existing file is
// never touched (O_EXCL); with force the data goes to a 0600 temporary file in the same
// directory that is renamed over the target, so the result is 0600 even when the old
// file was not, and a crash never leaves a half-written key.
func writeSecret(path string, data []byte, force bool) error {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("refusing to overwrite %s (use -force)", path)
			}
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
		if err := f.Close(); err != nil {
			os.Remove(path)
			return err
		}
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".aauth-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
