package admincmd

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// Admin API paths (authserver's admin.api.aauth_grants and admin.api.aauth_pending, and
// the key rotation admin module).
const (
	pathGrants     = "/aauth/grants"
	pathPending    = "/aauth/pending"
	pathKeys       = "/aauth/keys"
	pathKeysRotate = "/aauth/keys/rotate"
)

// grantView is what the table shows of a GET /aauth/grants entry.
type grantView struct {
	ID       string    `json:"id"`
	Issuer   string    `json:"issuer"`
	User     string    `json:"user"`
	Agent    string    `json:"agent"`
	Resource string    `json:"resource"`
	Scopes   []string  `json:"scopes"`
	Expires  time.Time `json:"expires"`
}

// pendingView is what the table shows of a GET /aauth/pending entry.
type pendingView struct {
	grantView
	State string `json:"state"`
}

// keyView is a GET /aauth/keys entry: the admin API's own type.
type keyView = keystore.Info

func listGrants(fl caddycmd.Flags, out io.Writer, _ []string) error {
	return list(fl, out, pathGrants, "no remembered grants", func(t *table, gs []grantView) {
		t.row("ID", "ISSUER", "USER", "AGENT", "RESOURCE", "SCOPES", "EXPIRES")
		for _, g := range gs {
			t.row(g.ID, g.Issuer, g.User, g.Agent, g.Resource, strings.Join(g.Scopes, " "), stamp(g.Expires))
		}
	})
}

func listPending(fl caddycmd.Flags, out io.Writer, _ []string) error {
	return list(fl, out, pathPending, "no pending consent requests", func(t *table, ps []pendingView) {
		t.row("ID", "STATE", "ISSUER", "USER", "AGENT", "RESOURCE", "SCOPES", "EXPIRES")
		for _, p := range ps {
			t.row(p.ID, p.State, p.Issuer, p.User, p.Agent, p.Resource, strings.Join(p.Scopes, " "), stamp(p.Expires))
		}
	})
}

func listKeys(fl caddycmd.Flags, out io.Writer, _ []string) error {
	return list(fl, out, pathKeys, "no keys", keysTable)
}

func keysTable(t *table, ks []keyView) {
	t.row("OWNER", "ROLE", "KID", "ALG", "STATE", "CREATED", "ACTIVATES", "RETIRES")
	for _, k := range ks {
		retires := "-"
		if !k.Retires.IsZero() {
			retires = stamp(k.Retires)
		}
		t.row(k.Owner, k.Role, k.KID, k.Alg, k.State, stamp(k.Created), stamp(k.Activates), retires)
	}
}

// list GETs path, a JSON array of T, and prints it (see show).
func list[T any](fl caddycmd.Flags, out io.Writer, path, none string, fill func(*table, []T)) error {
	c, err := newClient(fl)
	if err != nil {
		return err
	}
	var items []T
	raw, err := c.callJSON(http.MethodGet, path, nil, &items)
	if err != nil {
		return err
	}
	return show(fl, out, raw, none, items, fill)
}

// show prints an answer: the raw JSON with --json, else the table fill writes (or the
// none line when there are no items).
func show[T any](fl caddycmd.Flags, out io.Writer, raw []byte, none string, items []T, fill func(*table, []T)) error {
	if fl.Bool("json") {
		_, err := out.Write(raw)
		return err
	}
	if len(items) == 0 {
		_, err := fmt.Fprintln(out, none)
		return err
	}
	t := &table{w: tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)}
	fill(t, items)
	return t.w.Flush()
}

func revokeGrant(fl caddycmd.Flags, out io.Writer, args []string) error {
	c, err := newClient(fl)
	if err != nil {
		return err
	}
	id := args[0]
	if _, err := c.call(http.MethodDelete, pathGrants+"/"+url.PathEscape(id), nil); err != nil {
		if statusOf(err) == http.StatusNotFound {
			return fmt.Errorf("no grant %q: %w (see 'caddy aauth grants list')", id, err)
		}
		return err
	}
	_, err = fmt.Fprintf(out, "revoked grant %s\n", id)
	return err
}

func rotateKeys(fl caddycmd.Flags, out io.Writer, _ []string) error {
	c, err := newClient(fl)
	if err != nil {
		return err
	}
	var body any
	owner := fl.String("owner")
	if owner != "" {
		body = map[string]string{"owner": owner}
	}
	var ks []keyView
	raw, err := c.callJSON(http.MethodPost, pathKeysRotate, body, &ks)
	if err != nil {
		if owner != "" && statusOf(err) == http.StatusNotFound {
			return fmt.Errorf("no keyring of owner %q: %w (see 'caddy aauth keys list')", owner, err)
		}
		return err
	}
	if !fl.Bool("json") {
		what := "every keyring"
		if owner != "" {
			what = "the keyring of " + owner
		}
		if _, err := fmt.Fprintf(out, "rotated %s; the keys now:\n", what); err != nil {
			return err
		}
	}
	return show(fl, out, raw, "no keys", ks, keysTable)
}

// table writes aligned columns.
type table struct{ w *tabwriter.Writer }

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
		// Tabs and newlines in untrusted text would break the columns.
		cells[i] = strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return ' '
			}
			return r
		}, cells[i])
	}
	fmt.Fprintln(t.w, strings.Join(cells, "\t"))
}

// stamp prints a time in UTC, RFC 3339.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
