package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newVerifyCmd() *cobra.Command {
	var (
		o      adminOptions
		repair bool
	)
	cmd := &cobra.Command{
		Use:   "verify MIGRATION [--repair]",
		Short: "Compare transform(old) with new for every key, on the proxy that runs the migration",
		Long: `Ask the proxy that runs MIGRATION (--admin) to compare, for every key, the transform of the old
document with the new one, recheck each difference, and record every confirmed mismatch in the
catalog. The summary it saves is what the cutover gate "verification" reads. With --repair,
each confirmed mismatch is also converged. Exit status 1 when the run is not clean.`,
		Args: exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(true)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			sum, err := c.Verify(ctx, args[0], repair)
			if err != nil {
				return apiError(err)
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
			if !o.json {
				fmt.Fprintf(out, "%s: clean\n", args[0])
			}
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().Lookup("timeout").DefValue = "10m0s"
	o.timeout = 10 * time.Minute
	cmd.Flags().BoolVar(&repair, "repair", false, "converge every confirmed mismatch")
	return cmd
}
