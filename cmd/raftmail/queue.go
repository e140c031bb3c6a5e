package main

import (
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftmail/raftmail/ops"
	"github.com/raftmail/raftmail/storage"
)

// addQueueCommands adds the queue management commands, like postqueue and
// postsuper: show, retry, delete, hold, release, flush.
func addQueueCommands(c *cobra.Command) {
	idArg := exactArgs(1, "a queue ID (see `raftmail queue list`)")
	show := clientCmd("show ID", "Show a queued message: recipients, attempts, last remote replies", idArg, true, func(cmd *cobra.Command, args []string) error {
		var q storage.QueueEntry
		if err := call(cmd, "GET", "/v1/queue/"+url.PathEscape(args[0]), nil, &q); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), q)
		}
		return printQueueEntry(cmd, q)
	})
	op := func(use, short, verb, method, suffix string) *cobra.Command {
		return clientCmd(use, short, idArg, true, func(cmd *cobra.Command, args []string) error {
			var out ops.QueueOpResult
			if err := call(cmd, method, "/v1/queue/"+url.PathEscape(args[0])+suffix, nil, &out); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s.\n", verb, args[0])
			return nil
		})
	}
	retry := op("retry ID", "Attempt delivery of a message now (postqueue -i)", "Scheduled for delivery now:", "POST", "/retry")
	del := op("delete ID", "Delete a queued message without a bounce (postsuper -d)", "Deleted", "DELETE", "")
	hold := op("hold ID", "Put a message on hold: no delivery attempts until released (postsuper -h)", "Held", "POST", "/hold")
	release := op("release ID", "Release a held message and attempt delivery now (postsuper -H)", "Released", "POST", "/release")
	flush := clientCmd("flush", "Attempt delivery of every message that is not held, now (postqueue -f)", exactArgs(0, "no arguments"), true, func(cmd *cobra.Command, args []string) error {
		var out ops.QueueOpResult
		if err := call(cmd, "POST", "/v1/queue/flush", nil, &out); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), out)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Flushed the queue: %d message(s) scheduled for delivery now.\n", out.Changed)
		return nil
	})
	c.AddCommand(show, retry, del, hold, release, flush)
}

func printQueueEntry(cmd *cobra.Command, q storage.QueueEntry) error {
	w := cmd.OutOrStdout()
	from := q.From
	if from == "" {
		from = "<> (null sender)"
	}
	state := "queued"
	switch {
	case q.Hold:
		state = "on hold"
	case q.LeaseNode != "" && q.LeaseUntil.After(time.Now()):
		state = fmt.Sprintf("being delivered by %s (lease until %s)", q.LeaseNode, q.LeaseUntil.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "ID:            %s\n", q.ID)
	fmt.Fprintf(w, "From:          %s\n", from)
	fmt.Fprintf(w, "Size:          %d\n", q.Size)
	fmt.Fprintf(w, "Created:       %s\n", q.Created.Format(time.RFC3339))
	fmt.Fprintf(w, "State:         %s\n", state)
	fmt.Fprintf(w, "Attempts:      %d\n", q.Attempts)
	fmt.Fprintf(w, "Next attempt:  %s\n", q.NextAttempt.Format(time.RFC3339))
	if q.LastError != "" {
		fmt.Fprintf(w, "Last error:    %s\n", q.LastError)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECIPIENT\tSTATUS\tATTEMPTS\tLAST REPLY")
	for _, r := range q.Recipients {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Address, r.Status, r.Attempts, r.LastReply)
	}
	return tw.Flush()
}
