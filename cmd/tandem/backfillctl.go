package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/backfill"
)

// newBackfillControlCmds returns the subcommands of `tandem backfill` that read and steer a
// running backfill through the admin API of any proxy on the migration's catalog: pause,
// resume, rate and status. A change reaches every process copying, wherever it runs, within
// a second, and is audited with --user and --reason.
func newBackfillControlCmds() []*cobra.Command {
	return []*cobra.Command{
		newBackfillToggleCmd("pause", "Pause a migration's backfill in every process within a second",
			"Every worker of every process finishes the chunk it is writing and waits, keeping its\n"+
				"partitions. A backfill not started, finished or already paused is refused (exit 1).",
			(*admin.Client).BackfillPause,
			func(m string) string {
				return fmt.Sprintf("%s: backfill paused (go on with: tandem backfill resume %s --reason TEXT)", m, m)
			}),
		newBackfillToggleCmd("resume", "Let a paused backfill go on",
			"Every process copying goes on within a second. A backfill that is not paused is refused (exit 1).",
			(*admin.Client).BackfillResume,
			func(m string) string { return m + ": backfill resumed" }),
		newBackfillRateCmd(),
		newBackfillStatusCmd(),
	}
}

// newBackfillToggleCmd is pause or resume: one audited change that needs a reason.
func newBackfillToggleCmd(verb, short, long string,
	call func(*admin.Client, context.Context, string, string) (backfill.Progress, error), headline func(string) string) *cobra.Command {
	var o adminOptions
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " MIGRATION --reason TEXT",
		Short: short,
		Long:  short + ".\n" + long,
		Args:  exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireReason("backfill "+verb, reason); err != nil {
				return err
			}
			return o.backfillChange(cmd, headline(args[0]), func(ctx context.Context, c *admin.Client) (backfill.Progress, error) {
				return call(c, ctx, args[0], reason)
			})
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail (required)")
	return cmd
}

func newBackfillRateCmd() *cobra.Command {
	var o adminOptions
	var reason, docs, bytes string
	cmd := &cobra.Command{
		Use:   "rate MIGRATION [--docs N] [--bytes N] --reason TEXT",
		Short: "Set a backfill's limits in documents and bytes per second, for all its processes together",
		Long: `Set a backfill's limits for all the processes copying it together (each takes an equal
share), within a second, for example
  tandem backfill rate users-v2 --docs 2000 --reason "peak hours"
  tandem backfill rate users-v2 --docs unlimited --bytes 50e6 --reason "bytes matter more"
N is a number more than 0, or "unlimited" to remove the limit; a limit not given is kept.
Bytes are those of the target's BSON.`,
		Args: exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			if !f.Changed("docs") && !f.Changed("bytes") {
				return usagef("backfill rate needs --docs N, --bytes N or both (N: a number more than 0, or unlimited)")
			}
			var docsRate, bytesRate float64 // 0: not given, kept
			var err error
			if f.Changed("docs") {
				if docsRate, err = parseRateFlag("--docs", docs); err != nil {
					return err
				}
			}
			if f.Changed("bytes") {
				if bytesRate, err = parseRateFlag("--bytes", bytes); err != nil {
					return err
				}
			}
			if err := requireReason("backfill rate", reason); err != nil {
				return err
			}
			var set []string
			if f.Changed("docs") {
				set = append(set, formatLimit(docsRate, "docs/s"))
			}
			if f.Changed("bytes") {
				set = append(set, formatLimit(bytesRate, "bytes/s"))
			}
			headline := fmt.Sprintf("%s: backfill limit set to %s", args[0], strings.Join(set, ", "))
			return o.backfillChange(cmd, headline, func(ctx context.Context, c *admin.Client) (backfill.Progress, error) {
				return c.BackfillRate(ctx, args[0], docsRate, bytesRate, reason)
			})
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail (required)")
	cmd.Flags().StringVar(&docs, "docs", "", `documents per second, or "unlimited"`)
	cmd.Flags().StringVar(&bytes, "bytes", "", `bytes per second (of the target's BSON), or "unlimited"`)
	return cmd
}

// backfillChange makes one state-changing backfill call and prints the progress it returns,
// after a headline.
func (o *adminOptions) backfillChange(cmd *cobra.Command, headline string, call func(context.Context, *admin.Client) (backfill.Progress, error)) error {
	return adminChange(o, cmd, call, func(out io.Writer, p backfill.Progress) {
		fmt.Fprintln(out, headline)
		printProgress(out, colorsFor(cmd, out), p, time.Now())
	})
}

func newBackfillStatusCmd() *cobra.Command {
	var o adminOptions
	var watching bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "status MIGRATION [--watch] [--interval 1s] [--output table|json]",
		Short: "Show a backfill's progress over every process copying it",
		Long: `Show a backfill's progress as the catalog has it, over every process copying it: state,
limits, partitions, documents copied of the estimate, bytes, speed, ETA, dead letters, keys
converged again, errors retried, and the processes copying.
With --watch, show it again every --interval until the backfill is done, or Ctrl-C; on a
terminal the screen is redrawn, otherwise each view follows the last (with --output json,
one JSON object per line: JSON lines).`,
		Args: exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkInterval(interval); err != nil {
				return err
			}
			c, err := o.client(false)
			if err != nil {
				return err
			}
			if !watching {
				p, err := o.backfillStatus(cmd.Context(), c, args[0])
				if err != nil {
					return o.apiError(err)
				}
				out := cmd.OutOrStdout()
				return o.print(out, p, func() { printProgress(out, colorsFor(cmd, out), p, time.Now()) })
			}
			return watch[backfill.Progress]{
				what: "backfill status " + args[0], interval: interval,
				read: func(ctx context.Context) (backfill.Progress, error) { return o.backfillStatus(ctx, c, args[0]) },
				show: printProgress,
				done: func(p backfill.Progress) bool { return p.State == backfill.StateDone },
			}.run(cmd, &o)
		},
	}
	o.addFlags(cmd)
	cmd.Flags().BoolVar(&watching, "watch", false, "show the progress again every --interval until the backfill is done (or Ctrl-C)")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often --watch reads the progress")
	return cmd
}

func (o *adminOptions) backfillStatus(ctx context.Context, c *admin.Client, migration string) (backfill.Progress, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return c.BackfillStatus(ctx, migration)
}

// copiedOf is "copied of ~estimate (percent)", or the copied count alone without an estimate.
func copiedOf(copied, estimate int64) string {
	if estimate <= 0 {
		return strconv.FormatInt(copied, 10)
	}
	return fmt.Sprintf("%d of ~%d (%.1f%%)", copied, estimate, 100*float64(copied)/float64(estimate))
}

// wholeRate is a rate rounded to a whole number.
func wholeRate(r float64) string { return strconv.FormatFloat(math.Round(r), 'f', -1, 64) }

// printProgress is the one-screen view of a backfill; now dates the runners' reports.
func printProgress(w io.Writer, c palette, p backfill.Progress, now time.Time) {
	fmt.Fprintf(w, "backfill of %s: %s\n", p.Migration, c.state(p.State))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  paused\t%s\n", yesNo(p.Paused))
	fmt.Fprintf(tw, "  limits\t%s, %s\n", formatLimit(p.Rate, "docs/s"), formatLimit(p.BytesRate, "bytes/s"))
	fmt.Fprintf(tw, "  partitions\t%d/%d done, %d active\n", p.PartitionsDone, p.Partitions, p.PartitionsActive)
	fmt.Fprintf(tw, "  copied\t%s\n", copiedOf(p.Copied, p.Estimate))
	fmt.Fprintf(tw, "  bytes\t%s\n", formatBytes(float64(p.Bytes)))
	fmt.Fprintf(tw, "  speed\t%s docs/s, %s/s\n", wholeRate(p.DocsPerSec), formatBytes(p.BytesPerSec))
	eta := "unknown"
	switch {
	case p.State == backfill.StateDone:
		eta = "-"
	case p.ETA > 0:
		eta = p.ETA.Round(time.Second).String()
	}
	fmt.Fprintf(tw, "  ETA\t%s\n", eta)
	fmt.Fprintf(tw, "  dead letters\t%d\n", p.DeadLettered)
	fmt.Fprintf(tw, "  reconverged\t%d\n", p.Reconverged)
	fmt.Fprintf(tw, "  errors\t%d\n", p.Errors)
	fmt.Fprintf(tw, "  started\t%s (plan %s)\n", p.StartedAt.UTC().Format(time.RFC3339), p.PlanID)
	fmt.Fprintf(tw, "  runners\t%d\n", len(p.Runners))
	_ = tw.Flush()
	if len(p.Runners) == 0 {
		return
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "    OWNER\t%s\tLEASES\tDOCS/S\tLIMIT\tLAST SEEN\n", c.plain("STATE"))
	for _, r := range p.Runners {
		fmt.Fprintf(tw, "    %s\t%s\t%d\t%s\t%s\t%s ago\n", r.Owner, c.state(r.State), r.Leases,
			strconv.FormatFloat(math.Round(r.DocsPerSec), 'f', -1, 64), formatLimit(r.RateLimit, "docs/s"),
			now.Sub(r.UpdatedAt).Round(100*time.Millisecond))
	}
	_ = tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// formatLimit is a rate limit with its unit; 0 (as the catalog stores it) and +Inf (as
// backfill.Unlimited sets it) are "unlimited".
func formatLimit(r float64, unit string) string {
	if r <= 0 || math.IsInf(r, 1) {
		return "unlimited " + unit
	}
	return strconv.FormatFloat(r, 'g', -1, 64) + " " + unit
}

// formatBytes is n in binary units, "1.5 MiB".
func formatBytes(n float64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%.0f B", n)
	}
	exp, div := 0, float64(unit)
	for n/div >= unit && exp < 5 {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", n/div, "KMGTPE"[exp])
}
