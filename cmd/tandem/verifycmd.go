package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/admin"
)

func newVerifyCmd() *cobra.Command {
	var (
		o      adminOptions
		repair bool
		state  bool
	)
	cmd := &cobra.Command{
		Use:   "verify MIGRATION [--repair | --state]",
		Short: "Compare transform(old) with new for every key, on the proxy that runs the migration",
		Long: `Ask the proxy that runs MIGRATION (--admin) to compare, for every key, the transform of the old
document with the new one, recheck each difference, and record every confirmed mismatch in the
catalog. The run is a set of tasks in the catalog: several proxies share one, and a run cut
short (a crash, an outage, the timeout) is resumed by the next "tandem verify". Its state is
what the cutover gate "verification" reads. With --repair, each confirmed mismatch is also
converged, at a limited rate, and rechecked. Exit status 1 when the run is not clean.

With --state, print the state of the newest run (a run of "tandem verify", or the continuous
one of --verify-continuous) instead: coverage, generations, mismatches by kind, backlog, and
what is not covered yet. Exit status 1 when it is not clean.`,
		Args: exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(true)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			if state {
				if repair {
					return usagef("--state reads, --repair runs: pass one of them")
				}
				return printVerifyState(ctx, cmd, &o, c, args[0])
			}
			sum, err := c.Verify(ctx, args[0], repair)
			if err != nil {
				return o.apiError(err)
			}
			out := cmd.OutOrStdout()
			if err := o.print(out, sum, func() {
				fmt.Fprintf(out, "%s: %d keys compared, %d mismatches, %d errors, %d repaired in %s\n", args[0],
					sum.Keys, sum.Mismatches, sum.Errors, sum.Repaired, sum.Finished.Sub(sum.Started).Round(time.Millisecond))
				for _, s := range sum.Samples {
					fmt.Fprintf(out, "  %s\n", s)
				}
			}); err != nil {
				return err
			}
			if !sum.Clean {
				return fmt.Errorf("verification of %s is not clean", args[0])
			}
			if !o.output.isJSON() {
				fmt.Fprintf(out, "%s: %s\n", args[0], colorsFor(cmd, out).state("clean"))
			}
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().Lookup("timeout").DefValue = "10m0s"
	o.timeout = 10 * time.Minute
	cmd.Flags().BoolVar(&repair, "repair", false, "converge every confirmed mismatch, then recheck it")
	cmd.Flags().BoolVar(&state, "state", false, "print the newest run's state instead of running one")
	return cmd
}

// printVerifyState prints the newest verification run's state; not clean is an error.
func printVerifyState(ctx context.Context, cmd *cobra.Command, o *adminOptions, c *admin.Client, name string) error {
	st, err := c.VerifyState(ctx, name)
	if err != nil {
		return o.apiError(err)
	}
	out := cmd.OutOrStdout()
	if err := o.print(out, st, func() {
		fmt.Fprintf(out, "%s: %s (%s), generation %d, started %s\n", name, st.RunID, st.Mode, st.Generation, st.Started.Format(time.RFC3339))
		fmt.Fprintf(out, "  full pass: done=%v, %d of ~%d keys compared\n", st.FullPassDone, st.Compared, st.Total)
		c := st.Confirmed
		fmt.Fprintf(out, "  confirmed: %d (missing %d, extra %d, differing %d, untransformable %d, invariant broken %d, index missing %d)\n",
			c.Total(), c.Missing, c.Extra, c.Differing, c.Untransformable, c.InvariantBroken, c.IndexMissing)
		fmt.Fprintf(out, "  pending: %d, recheck backlog: %d, sampled: %d\n", st.Pending, st.Backlog, st.Sampled)
		for _, u := range st.Uncovered {
			fmt.Fprintf(out, "  not covered: %s partition %d after %s: %s\n", u.Store, u.Partition, u.After, u.Reason)
		}
	}); err != nil {
		return err
	}
	if !st.Clean() {
		return fmt.Errorf("verification of %s is not clean", name)
	}
	return nil
}
