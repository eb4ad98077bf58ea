package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// The `caddy aauth` subcommand of the built binary, against the admin API of a running
// Caddy (the in-process test instance, admin localhost:2999): a pending consent request
// is listed while it waits and after the user decided, its interaction code never; the
// remembered decision is listed and revoked; a second revocation, and an admin address
// where nothing listens, exit 1 with the reason.

// cliRun runs the caddy binary and returns its stdout, stderr and exit status.
func cliRun(t *testing.T, bin string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		status = ee.ExitCode()
	case err != nil:
		t.Fatalf("running %s %s: %v", bin, strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), status
}

// cliJSON runs a list subcommand with --json and decodes its output.
func cliJSON(t *testing.T, bin string, v any, args ...string) string {
	t.Helper()
	out, errOut, status := cliRun(t, bin, append(args, "--json", "--address", "localhost:2999")...)
	if status != 0 {
		t.Fatalf("caddy %s: exit %d: %s", strings.Join(args, " "), status, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("caddy %s --json: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

type cliPending struct {
	ID, Issuer, Agent, Resource, User, State string
	Scopes                                   []string
}

func TestAdminCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that builds the caddy binary")
	}
	bin := filepath.Join(t.TempDir(), "caddy")
	goBuild(t, moduleRoot(t), bin, "./cmd/caddy")
	env := startConsent(t, consentOptions{})
	pe := newConsentAgent(env.identity(), "cli test", nil).pendingOf(t, env.apiID+"/data")

	var ps []cliPending
	raw := cliJSON(t, bin, &ps, "aauth", "pending", "list")
	if len(ps) != 1 || ps[0].Issuer != env.authID || ps[0].State != "waiting" || ps[0].Agent != env.agentSrv.id ||
		ps[0].Resource != env.apiID || len(ps[0].Scopes) != 1 || ps[0].Scopes[0] != "data.write" {
		t.Fatalf("pending list: %s", raw)
	}
	if strings.Contains(raw, pe.Code) {
		t.Fatalf("the interaction code is listed: %s", raw)
	}
	out, _, status := cliRun(t, bin, "aauth", "pending", "list", "--address", "localhost:2999")
	if status != 0 || !strings.Contains(out, ps[0].ID) || !strings.Contains(out, "waiting") || strings.Contains(out, pe.Code) {
		t.Fatalf("pending table (exit %d):\n%s", status, out)
	}

	approveRemembered(t, env.authID, pe.Code)
	if raw = cliJSON(t, bin, &ps, "aauth", "pending", "list"); len(ps) != 1 || ps[0].State != "approved" || ps[0].User != "alice" {
		t.Fatalf("pending list after the approval: %s", raw)
	}

	var gs []adminGrant
	if raw = cliJSON(t, bin, &gs, "aauth", "grants", "list"); len(gs) != 1 || gs[0].User != "alice" {
		t.Fatalf("grants list: %s", raw)
	}
	out, errOut, status := cliRun(t, bin, "aauth", "grants", "revoke", gs[0].ID, "--address", "localhost:2999")
	if status != 0 || out != "revoked grant "+gs[0].ID+"\n" {
		t.Fatalf("revoke: exit %d: %s%s", status, out, errOut)
	}
	if out, _, status = cliRun(t, bin, "aauth", "grants", "list", "--address", "localhost:2999"); status != 0 || out != "no remembered grants\n" {
		t.Fatalf("grants after the revocation: exit %d: %s", status, out)
	}

	_, errOut, status = cliRun(t, bin, "aauth", "grants", "revoke", gs[0].ID, "--address", "localhost:2999")
	if status != 1 || !strings.Contains(errOut, "HTTP 404") || !strings.Contains(errOut, "no such grant") {
		t.Fatalf("second revoke: exit %d: %s", status, errOut)
	}
	cliKeys(t, bin, env.authID)

	gone := "127.0.0.1:" + freePort(t)
	_, errOut, status = cliRun(t, bin, "aauth", "pending", "list", "--address", gone)
	if status != 1 || !strings.Contains(errOut, "admin API at "+gone+" is unreachable") {
		t.Fatalf("unreachable admin: exit %d: %s", status, errOut)
	}
}

// cliKeys lists the keyrings, rotates the auth server's (the new key is listed as next,
// the old one stays active with a retire time, the other keyrings are untouched), and
// refuses an unknown owner.
func cliKeys(t *testing.T, bin, issuer string) {
	t.Helper()
	var ks []keystore.Info
	raw := cliJSON(t, bin, &ks, "aauth", "keys", "list")
	active := 0
	for _, k := range ks {
		if k.Owner == issuer && k.Role == "issuer" && k.State == "active" {
			active++
		}
	}
	if active != 1 {
		t.Fatalf("keys list: want one active issuer key for %s: %s", issuer, raw)
	}
	raw = cliJSON(t, bin, &ks, "aauth", "keys", "rotate", "--owner", issuer)
	states := map[string]int{}
	for _, k := range ks {
		if k.Owner != issuer {
			if k.State == "next" {
				t.Fatalf("rotate --owner rotated another owner's keyring: %s", raw)
			}
			continue
		}
		states[k.State]++
		if k.State == "active" && k.Retires.IsZero() {
			t.Fatalf("the old key has no retire time after the rotation: %s", raw)
		}
	}
	if states["active"] != 1 || states["next"] != 1 {
		t.Fatalf("after rotate: want one active and one next key: %s", raw)
	}
	out, _, status := cliRun(t, bin, "aauth", "keys", "list", "--address", "localhost:2999")
	if status != 0 || !strings.Contains(out, "next") {
		t.Fatalf("keys table (exit %d):\n%s", status, out)
	}
	_, errOut, status := cliRun(t, bin, "aauth", "keys", "rotate", "--owner", "http://nobody.example", "--address", "localhost:2999")
	if status != 1 || !strings.Contains(errOut, "HTTP 404") {
		t.Fatalf("rotate of an unknown owner: exit %d: %s", status, errOut)
	}
}
