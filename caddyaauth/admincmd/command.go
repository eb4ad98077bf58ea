// Package admincmd is the `caddy aauth` subcommand: it lists and revokes remembered
// consent decisions, lists pending consent requests, and lists and rotates signing keys,
// all through the admin API of a running Caddy (like `caddy stop` and `caddy reload`).
// Importing the package registers the command (caddycmd.RegisterCommand).
package admincmd

import (
	"fmt"
	"io"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "aauth",
		Usage: "grants list|revoke <id> | pending list | keys list|rotate [--owner <id>]",
		Short: "Manages AAuth grants, pending consent requests and keys over the admin API",
		Long: `
Talks to the admin API of a running Caddy with the aauth plugin.

  caddy aauth grants list            remembered consent decisions
  caddy aauth grants revoke <id>     revoke one of them
  caddy aauth pending list           consent requests waiting for a user, or decided
                                     and not yet collected by the agent
  caddy aauth keys list              signing keys of every keyring (next, active, retired)
  caddy aauth keys rotate [--owner <id>]
                                     rotate every keyring, or the one of one resource
                                     or issuer

The admin address is --address if given, else the admin listener of the --config
file, else Caddy's default (localhost:2019), as for 'caddy stop'. Lists print a table;
--json prints the admin API's JSON instead. The exit status is 1 on any failure.
`,
		CobraFunc: build,
	})
}

// runFunc runs one leaf command; out is its standard output.
type runFunc func(fl caddycmd.Flags, out io.Writer, args []string) error

// build fills in the aauth command given by caddycmd.
func build(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.String("address", "", "Address of the admin API, if not the one in --config or the default")
	pf.StringP("config", "c", "", "Configuration file to read the admin address from, if --address is not used")
	pf.StringP("adapter", "a", "", "Name of the config adapter for --config")
	cmd.Args = cobra.NoArgs
	cmd.RunE = needSubcommand

	grants := group("grants", "Lists and revokes remembered consent decisions")
	grants.AddCommand(
		leaf("list", "Lists the remembered consent decisions", cobra.NoArgs, true, listGrants),
		leaf("revoke <id>", "Revokes one remembered consent decision", cobra.ExactArgs(1), false, revokeGrant),
	)
	pending := group("pending", "Lists consent requests waiting for a decision")
	pending.AddCommand(leaf("list", "Lists the pending consent requests", cobra.NoArgs, true, listPending))
	keys := group("keys", "Lists and rotates signing keys")
	rotate := leaf("rotate", "Rotates the signing keys of every keyring, or of --owner", cobra.NoArgs, true, rotateKeys)
	rotate.Flags().String("owner", "", "Rotate only the keyring of this resource or issuer id")
	keys.AddCommand(leaf("list", "Lists the signing keys of every keyring", cobra.NoArgs, true, listKeys), rotate)
	cmd.AddCommand(grants, pending, keys)
}

// group is a command that only holds subcommands.
func group(name, short string) *cobra.Command {
	return &cobra.Command{Use: name, Short: short, Args: cobra.NoArgs, RunE: needSubcommand}
}

// needSubcommand refuses a group command run without a subcommand.
func needSubcommand(cmd *cobra.Command, _ []string) error {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return fmt.Errorf("%s needs a subcommand: %s (see '%s --help')", cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())
}

// leaf is a command that runs run; with jsonFlag it takes --json.
func leaf(use, short string, args cobra.PositionalArgs, jsonFlag bool, run runFunc) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Args: args}
	if jsonFlag {
		c.Flags().Bool("json", false, "Print the admin API's JSON instead of a table")
	}
	c.RunE = func(cc *cobra.Command, a []string) error {
		return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			if err := run(fl, cc.OutOrStdout(), a); err != nil {
				return caddy.ExitCodeFailedStartup, err
			}
			return caddy.ExitCodeSuccess, nil
		})(cc, a)
	}
	return c
}
