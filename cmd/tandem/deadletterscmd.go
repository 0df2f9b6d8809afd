package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/migration"
)

// newDeadLettersCmd is `tandem dead-letters list|retry`: the documents a migration could not
// transform or write, and converging them again once the spec (or the data) is fixed.
func newDeadLettersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dead-letters",
		Short: "List a migration's dead letters, or converge them again, through the admin API",
		Long: `A dead letter is a document tandem could not transform or write; it is kept in the catalog,
never dropped. When a proxy or "tandem run" starts with a new spec version, it converges the
dead letters of older versions again by itself; "tandem dead-letters retry" does it on demand.
See docs/runbooks/dead-letters-growing.md.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("dead-letters %s: unknown subcommand: want list or retry", args[0])
			}
			return nil
		},
		RunE: func(*cobra.Command, []string) error {
			return usagef("dead-letters needs a subcommand: list or retry")
		},
	}
	cmd.AddCommand(newDeadLettersListCmd(), newDeadLettersRetryCmd())
	return cmd
}

func newDeadLettersListCmd() *cobra.Command {
	var o adminOptions
	var direction string
	var limit int
	cmd := &cobra.Command{
		Use:   "list MIGRATION [--direction forward|reverse] [--limit N]",
		Short: "List a migration's unresolved dead letters, oldest first (keys, failing step, reason; no documents)",
		Args:  exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if direction != "" && direction != catalog.DirectionForward && direction != catalog.DirectionReverse {
				return usagef("--direction %q: want forward or reverse", direction)
			}
			if limit < 1 || limit > admin.MaxDeadLetterLimit {
				return usagef("--limit %d: want a number from 1 to %d", limit, admin.MaxDeadLetterLimit)
			}
			return adminRead(&o, cmd, func(ctx context.Context, c *admin.Client) (admin.DeadLettersResponse, error) {
				dls, err := c.DeadLetters(ctx, args[0], direction, limit)
				return admin.DeadLettersResponse{DeadLetters: dls}, err
			}, func(out io.Writer, r admin.DeadLettersResponse) {
				printDeadLetterList(out, args[0], r.DeadLetters, limit)
			})
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&direction, "direction", "", "only forward (old → new) or reverse (new → old) ones")
	cmd.Flags().IntVar(&limit, "limit", admin.DefaultDeadLetterLimit, "list at most this many")
	_ = cmd.RegisterFlagCompletionFunc("direction", cobra.FixedCompletions([]string{catalog.DirectionForward, catalog.DirectionReverse}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func printDeadLetterList(w io.Writer, name string, dls []admin.DeadLetterEntry, limit int) {
	if len(dls) == 0 {
		fmt.Fprintf(w, "%s: no dead letters\n", name)
		return
	}
	more := ""
	if len(dls) == limit {
		more = fmt.Sprintf(" (the first %d: --limit shows more)", limit)
	}
	fmt.Fprintf(w, "%s: %d dead letter(s)%s\n", name, len(dls), more)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tDIRECTION\tSTEP\tREASON\tSPEC VERSION\tATTEMPTS\tFIRST SEEN")
	for _, d := range dls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Key, d.Direction, d.Step, d.Reason, shortID(d.SpecVersion), d.Attempts, d.FirstSeen.UTC().Format("2006-01-02 15:04:05Z"))
	}
	_ = tw.Flush()
}

func newDeadLettersRetryCmd() *cobra.Command {
	var o adminOptions
	var reason string
	var all bool
	cmd := &cobra.Command{
		Use:   "retry MIGRATION [--all] --reason TEXT",
		Short: "Converge a migration's dead letters again with the spec the proxy runs now",
		Long: `Converge again the dead letters recorded under an older spec version (with --all, every one:
after fixing the documents themselves), on the proxy at --admin, which must run the migration.
Forward ones are retried in every phase; reverse ones only in cutover and finalized, when the new
store is the system of record (before that, converging new's document back could overwrite a
newer write in old). Each one that converges is resolved; one that fails again stays, with its
new reason. The retry is recorded in the audit trail with --reason.`,
		Args: exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireReason("dead-letters retry", reason); err != nil {
				return err
			}
			return adminChange(&o, cmd, func(ctx context.Context, c *admin.Client) (migration.DeadLetterRetry, error) {
				return c.RetryDeadLetters(ctx, args[0], all, reason)
			}, func(w io.Writer, r migration.DeadLetterRetry) {
				fmt.Fprintf(w, "%s: %d dead letter(s) retried: %d resolved, %d still failing\n", args[0], r.Retried, r.Resolved, r.StillFailing)
				if r.SkippedReverse > 0 {
					fmt.Fprintf(w, "  %d reverse dead letter(s) left until cutover\n", r.SkippedReverse)
				}
				if r.StillFailing > 0 {
					fmt.Fprintf(w, "  see them: tandem dead-letters list %s\n", args[0])
				}
			})
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail (required)")
	cmd.Flags().BoolVar(&all, "all", false, "retry every dead letter, not only those of older spec versions")
	return cmd
}
