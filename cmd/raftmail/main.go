// Command raftmail runs a Raftmail node and administers a cluster.
//
// It is the composition root: it reads configuration, builds storage →
// cluster → ops, owns signal handling and the shutdown order, and holds no
// mail logic.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "raftmail: %v\nRun '%s --help' for usage.\n", ue.err, ue.cmd)
		} else {
			fmt.Fprintf(os.Stderr, "raftmail: %v\n", err)
		}
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// usageError is a command-line mistake: printed with a pointer to --help.
type usageError struct {
	cmd string
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd.CommandPath(), err: fmt.Errorf(format, args...)}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "raftmail",
		Short: "Raftmail: a mail server that runs as a cluster of equal nodes",
		Long: `Raftmail is one mail service (SMTP, submission, IMAP, POP3) run as a cluster of
equal peer nodes that replicate mail and metadata through Raft.

Start a cluster:   raftmail init && raftmail serve
Add a node:        raftmail join --token TOKEN HOST:7947 && raftmail serve
Look at it:        raftmail status`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				return usagef(cmd, "unknown command %q (did you mean %q?)", args[0], s[0])
			}
			return usagef(cmd, "unknown command %q", args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	root.PersistentFlags().String("data-dir", "", "node data directory (env RAFTMAIL_DATA_DIR; default /var/lib/raftmail as root, else ~/.local/share/raftmail)")
	root.PersistentFlags().String("config", "", "TOML file with node settings (env RAFTMAIL_CONFIG)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{cmd: c.CommandPath(), err: err}
	})
	root.AddCommand(
		newInitCmd(),
		newServeCmd(),
		newJoinCmd(),
		newTokenCmd(),
		newLeaveCmd(),
		newRemoveCmd(),
		newStatusCmd(),
		newHealthCmd(),
		newDomainCmd(),
		newUserCmd(),
		newAliasCmd(),
		newQueueCmd(),
		newDKIMCmd(),
		newDNSCmd(),
		newChaosCmd(),
		newBenchCmd(),
	)
	return root
}

// exactArgs is cobra.ExactArgs with a message that says what is expected.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef(cmd, "expected %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}
