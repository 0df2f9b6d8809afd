package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
)

// How much of each section the screen of `tandem status NAME` shows: what fits in about 40
// lines for a typical migration. The JSON has everything the API gives.
const (
	statusWidth       = 100 // columns, off a terminal (on one, its width)
	statusProblems    = 6
	statusPartitions  = 5
	statusMismatches  = 5
	statusDeadLetters = 3
	statusAudit       = 4
	statusSparkWidth  = 48
	statusRunIDLen    = 12 // "run-000001"; a longer id is cut
)

func newStatusCmd() *cobra.Command {
	var o adminOptions
	var watching bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "status [MIGRATION] [--watch] [--interval 2s] [--output table|json]",
		Short: "Show a migration on one screen, or every migration one line each",
		Long: `Show a migration on one screen, as the admin API's overview has it (what the dashboard
shows): what needs attention, worst first, each with its runbook; the cutover gates as a
cutover now would find them; the backfill and its partitions not done; the change streams
with their lag; the verification run with its drift over 24 hours; the newest mismatches
(field paths, never values); the dead letters; the newest audit entries. A section that could
not be read says why; the others are still shown.
Without MIGRATION, every migration of the catalog, one line each: phase, backfill, worst
lag, confirmed mismatches and problems.
With --watch, show it again every --interval until Ctrl-C; on a terminal the screen is
redrawn, otherwise each view follows the last after a blank line.
--output json prints the API's overview (GET /v1/migrations/NAME/overview) as it is; without
MIGRATION, a list of them (a migration whose overview could not be read has only its name,
flags.phase and errors.overview). With --watch, one JSON document per line (JSON lines).`,
		Args: maxOneArg("MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkInterval(interval); err != nil {
				return err
			}
			c, err := o.client(false)
			if err != nil {
				return err
			}
			width := screenWidth(cmd.OutOrStdout())
			if len(args) == 1 {
				name := args[0]
				read := func(ctx context.Context) (admin.Overview, error) { return o.overview(ctx, c, name) }
				show := func(w io.Writer, p palette, ov admin.Overview, _ time.Time) { printOverview(w, p, ov, width) }
				if watching {
					return watch[admin.Overview]{what: "status " + name, interval: interval, read: read, show: show}.run(cmd, &o)
				}
				ov, err := read(cmd.Context())
				if err != nil {
					return o.apiError(err)
				}
				out := cmd.OutOrStdout()
				return o.print(out, ov, func() { show(out, colorsFor(cmd, out), ov, time.Now()) })
			}
			read := func(ctx context.Context) ([]admin.Overview, error) { return o.overviews(ctx, c) }
			show := func(w io.Writer, p palette, ovs []admin.Overview, now time.Time) {
				printOverviews(w, p, ovs, now, width)
			}
			if watching {
				return watch[[]admin.Overview]{what: "status", interval: interval, read: read, show: show}.run(cmd, &o)
			}
			ovs, err := read(cmd.Context())
			if err != nil {
				return o.apiError(err)
			}
			out := cmd.OutOrStdout()
			if err := o.print(out, ovs, func() { show(out, colorsFor(cmd, out), ovs, time.Now()) }); err != nil {
				return err
			}
			return unreadOverviews(ovs)
		},
	}
	o.addFlags(cmd)
	cmd.Flags().BoolVar(&watching, "watch", false, "show it again every --interval (Ctrl-C to stop)")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often --watch reads the overview")
	return cmd
}

// maxOneArg takes no argument or one, not empty.
func maxOneArg(name string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 1 {
			return usagef("%s takes at most one %s (got %d arguments)", cmd.Name(), name, len(args))
		}
		if len(args) == 1 && strings.TrimSpace(args[0]) == "" {
			return usagef("%s: argument 1 is empty", cmd.Name())
		}
		return nil
	}
}

func (o *adminOptions) overview(ctx context.Context, c *admin.Client, name string) (admin.Overview, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return c.Overview(ctx, name)
}

// overviewUnread is the section named in Errors of a migration whose overview could not be
// read at all, in the list of every migration.
const overviewUnread = "overview"

// overviews reads the overview of every migration of the catalog, by name. One that cannot
// be read is listed with the reason rather than failing the list, so that one migration in
// trouble does not hide the others; a failed listing fails it.
func (o *adminOptions) overviews(ctx context.Context, c *admin.Client) ([]admin.Overview, error) {
	lctx, cancel := context.WithTimeout(ctx, o.timeout)
	ms, err := c.Migrations(lctx)
	cancel()
	if err != nil {
		return nil, err
	}
	out := make([]admin.Overview, 0, len(ms))
	for _, m := range ms {
		ov, err := o.overview(ctx, c, m.Name)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			ov = admin.Overview{Migration: m.Name, Flags: flags.Values{Phase: m.Phase, Revision: m.Revision},
				Errors: map[string]string{overviewUnread: errorLine(o.apiError(err))}}
		}
		out = append(out, ov)
	}
	return out, nil
}

// unreadOverviews fails `tandem status` (exit 1) when an overview of the list could not be
// read: the list is printed, but not all of it was shown.
func unreadOverviews(ovs []admin.Overview) error {
	var names []string
	for _, ov := range ovs {
		if _, ok := ov.Errors[overviewUnread]; ok {
			names = append(names, ov.Migration)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("could not read the overview of %s (the reason is in its line)", strings.Join(names, ", "))
}

// screenWidth is the width the screen is clipped to: the terminal's, else statusWidth.
func screenWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok && isTerminal(w) {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 20 {
			return cols
		}
	}
	return statusWidth
}

// printOverview is the one screen of a migration. It is written to a buffer first so that
// every line can be clipped to width: the free text (a message, a detail, a reason) comes
// last on its line, and clipping it keeps the screen one screen.
func printOverview(w io.Writer, c palette, o admin.Overview, width int) {
	var b bytes.Buffer
	v := o.Flags
	fmt.Fprintf(&b, "%s · phase %s · read_source=%s shadow_read_percent=%s write_block=%t · rev %d · %s\n",
		o.Migration, v.Phase, v.ReadSource, strconv.FormatFloat(v.ShadowReadPercent, 'g', -1, 64), v.WriteBlock, v.Revision,
		o.At.Local().Format("15:04:05"))
	printSectionErrors(&b, c, o.Errors)
	printProblems(&b, c, o.Problems)
	printGateLines(&b, c, o.Gates)
	printRuntime(&b, c, o)
	printBackfill(&b, c, o.Backfill)
	printStreams(&b, c, o)
	printVerify(&b, c, o)
	printMismatches(&b, o)
	printDeadLetters(&b, o)
	printAudit(&b, o.Audit)
	writeClipped(w, b.Bytes(), width)
}

func printSectionErrors(w io.Writer, c palette, errs map[string]string) {
	sections := make([]string, 0, len(errs))
	for s := range errs {
		sections = append(sections, s)
	}
	sort.Strings(sections)
	for _, s := range sections {
		fmt.Fprintf(w, "%s %s could not be read: %s\n", c.paint(ansiRed, "!"), s, oneLine(errs[s]))
	}
}

func printProblems(w io.Writer, c palette, ps []admin.Problem) {
	if len(ps) == 0 {
		fmt.Fprintf(w, "needs attention: %s\n", c.paint(ansiGreen, "nothing"))
		return
	}
	fmt.Fprintf(w, "needs attention: %s problem(s)\n", c.count(len(ps)))
	for i, p := range ps {
		if i == statusProblems {
			fmt.Fprintf(w, "  … and %d more\n", len(ps)-i)
			break
		}
		// The severity padded to the widest, so that components and runbooks line up.
		pad := strings.Repeat(" ", max(0, len(admin.SeverityCritical)-len(p.Severity)))
		fmt.Fprintf(w, "  %s%s %s: %s\n", c.severity(p.Severity), pad, p.Component, oneLine(p.Message))
		fmt.Fprintf(w, "  %s runbook %s\n", strings.Repeat(" ", len(admin.SeverityCritical)), p.Runbook)
	}
}

func printGateLines(w io.Writer, c palette, gates []flags.GateResult) {
	if len(gates) == 0 {
		fmt.Fprintln(w, "cutover gates: none read")
		return
	}
	fmt.Fprintln(w, "cutover gates:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, g := range gates {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.mark(g.OK), g.Gate, oneLine(g.Detail))
	}
	_ = tw.Flush()
}

// printRuntime is one line of the paths this process runs, when the migration runs here.
func printRuntime(w io.Writer, c palette, o admin.Overview) {
	if o.Runtime == nil || len(o.Runtime.Paths) == 0 {
		return
	}
	parts := make([]string, 0, len(o.Runtime.Paths))
	for _, p := range o.Runtime.Paths {
		parts = append(parts, p.Name+" "+c.state(string(p.State)))
	}
	fmt.Fprintf(w, "runtime here: %s\n", strings.Join(parts, ", "))
}

func printBackfill(w io.Writer, c palette, b *admin.BackfillOverview) {
	if b == nil {
		fmt.Fprintln(w, "backfill: no plan yet")
		return
	}
	line := fmt.Sprintf("backfill: %s · partitions %d/%d done, %d active · copied %s", c.state(b.State), b.PartitionsDone,
		b.Partitions, b.PartitionsActive, copiedOf(b.Copied, b.Estimate))
	if b.State != backfill.StateDone {
		eta := "ETA unknown"
		if b.ETA > 0 {
			eta = "ETA " + shortDuration(b.ETA)
		}
		line += fmt.Sprintf(" · %s docs/s · %s", wholeRate(b.DocsPerSec), eta)
	}
	fmt.Fprintln(w, line)
	// The partitions not done, those that lost their process first: they are what to look at.
	var left []backfill.PartitionProgress
	for _, p := range b.PartitionList {
		if p.State != backfill.PartitionDone {
			left = append(left, p)
		}
	}
	rank := map[string]int{backfill.PartitionStalled: 0, backfill.PartitionCopying: 1, backfill.PartitionWaiting: 2}
	sort.SliceStable(left, func(i, j int) bool { return rank[left[i].State] < rank[left[j].State] })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, p := range left {
		if i == statusPartitions {
			_ = tw.Flush()
			fmt.Fprintf(w, "  … and %d more\n", len(left)-i)
			return
		}
		eta := "-"
		if p.ETA > 0 {
			eta = shortDuration(p.ETA)
		}
		owner := p.Owner
		if owner == "" {
			owner = "-"
		}
		fmt.Fprintf(tw, "  partition %d\t%s\t%d of ~%d\t%s docs/s\tETA %s\t%s\n", p.Index, c.state(p.State), p.Copied, p.Estimate,
			wholeRate(p.DocsPerSec), eta, owner)
	}
	_ = tw.Flush()
}

func printStreams(w io.Writer, c palette, o admin.Overview) {
	if len(o.Streams) == 0 {
		fmt.Fprintln(w, "change streams: none recorded")
		return
	}
	fmt.Fprintln(w, "change streams:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range o.Streams {
		lag := "lag -"
		if s.LagKnown {
			lag = "lag " + shortDuration(s.Lag)
		}
		newest := "-"
		if !s.At.IsZero() {
			newest = shortDuration(o.At.Sub(s.At)) + " ago"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d applied\tnewest %s\t%s\n", s.Direction, c.state(s.State), lag, s.Applied, newest, s.Source)
	}
	_ = tw.Flush()
}

func printVerify(w io.Writer, c palette, o admin.Overview) {
	v := o.Verify
	if v == nil {
		fmt.Fprintln(w, "verification: no run yet")
		return
	}
	pass := "full pass running"
	if v.FullPassDone {
		pass = "full pass done"
	}
	state := "clean"
	if !v.Clean() {
		state = "not clean"
	}
	fmt.Fprintf(w, "verification: %s · run %s (%s, generation %d) · %s\n", c.state(state), shortID(v.RunID), v.Mode, v.Generation, pass)
	coverage := fmt.Sprintf("compared %d", v.Compared)
	if v.Total > 0 {
		coverage = fmt.Sprintf("compared %d of ~%d (%.0f%%)", v.Compared, v.Total, percent(v.Compared, v.Total))
	}
	confirmed := v.Confirmed.Total()
	budget := fmt.Sprintf("confirmed %d (budget %d)", confirmed, v.MismatchBudget)
	if confirmed > v.MismatchBudget {
		budget = c.paint(ansiRed, budget)
	}
	backlog := fmt.Sprintf("backlog %d", v.Backlog)
	if v.MaxBacklog > 0 {
		backlog += fmt.Sprintf(" (max %d)", v.MaxBacklog)
	}
	line := fmt.Sprintf("  %s · %s · pending %d · %s", coverage, budget, v.Pending, backlog)
	if v.LastError != "" {
		line += " · last error: " + oneLine(v.LastError)
	}
	fmt.Fprintln(w, line)
	if len(o.Drift) > 0 {
		last := o.Drift[len(o.Drift)-1]
		fmt.Fprintf(w, "  drift since %s %s now %d confirmed, %d pending\n", o.Drift[0].At.Local().Format("15:04"),
			sparkline(o.Drift, statusSparkWidth), last.Confirmed, last.Pending)
	}
}

func printMismatches(w io.Writer, o admin.Overview) {
	if o.Verify == nil {
		return // no run: the line above says so
	}
	if len(o.Mismatches) == 0 {
		fmt.Fprintln(w, "mismatches: none open")
		return
	}
	open := max(o.Verify.Confirmed.Total()+o.Verify.Pending, int64(len(o.Mismatches)))
	fmt.Fprintf(w, "mismatches: the newest %d of %d open:\n", min(len(o.Mismatches), statusMismatches), open)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, m := range o.Mismatches {
		if i == statusMismatches {
			break
		}
		what := oneLine(m.Detail)
		if len(m.Fields) > 0 {
			paths := make([]string, len(m.Fields))
			for j, f := range m.Fields {
				paths[j] = f.Path
			}
			what = strings.Join(paths, ", ")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", m.KeyString, m.Kind, m.State, what)
	}
	_ = tw.Flush()
}

func printDeadLetters(w io.Writer, o admin.Overview) {
	d := o.DeadLetters
	if d.Forward+d.Reverse == 0 {
		fmt.Fprintln(w, "dead letters: none")
		return
	}
	fmt.Fprintf(w, "dead letters: %d forward, %d reverse; the oldest:\n", d.Forward, d.Reverse)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, e := range d.Oldest {
		if i == statusDeadLetters {
			break
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d attempt(s)\tsince %s ago\t%s\n", e.Key, e.Direction, e.Step, e.Attempts,
			shortDuration(o.At.Sub(e.FirstSeen)), oneLine(e.Reason))
	}
	_ = tw.Flush()
}

func printAudit(w io.Writer, entries []admin.HistoryEntry) {
	if len(entries) == 0 {
		fmt.Fprintln(w, "audit: no changes recorded")
		return
	}
	fmt.Fprintln(w, "audit, newest first:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, e := range entries {
		if i == statusAudit {
			break
		}
		what := e.Kind
		if e.Subject != "" {
			what += " " + e.Subject
		}
		from := e.From
		if from == "" {
			from = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s %s → %s\t%s\n", e.At.Local().Format("01-02 15:04:05"), e.Who, what, from, e.To, oneLine(e.Why))
	}
	_ = tw.Flush()
}

// printOverviews is every migration, one line each.
func printOverviews(w io.Writer, c palette, ovs []admin.Overview, now time.Time, width int) {
	var b bytes.Buffer
	if len(ovs) == 0 {
		fmt.Fprintln(&b, "no migrations in the catalog")
		writeClipped(w, b.Bytes(), width)
		return
	}
	fmt.Fprintf(&b, "%d migration(s) · %s\n", len(ovs), now.Local().Format("15:04:05 MST"))
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "MIGRATION\tPHASE\t%s\tWORST LAG\tCONFIRMED\tPROBLEMS\n", c.plain("BACKFILL"))
	for _, o := range ovs {
		if reason, ok := o.Errors[overviewUnread]; ok {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t%s\n", o.Migration, o.Flags.Phase, c.plain("-"), c.paint(ansiRed, "unreadable: "+reason))
			continue
		}
		bf := c.plain("-")
		if b := o.Backfill; b != nil {
			text := b.State
			if b.State != backfill.StateDone && b.Estimate > 0 {
				text += fmt.Sprintf(" %.0f%%", percent(b.Copied, b.Estimate))
			}
			bf = c.stateAs(b.State, text)
		}
		lag := "-"
		var worst time.Duration
		known := false
		for _, l := range o.Lags {
			if !known || l.Lag > worst {
				worst, known = l.Lag, true
			}
		}
		if known {
			lag = shortDuration(worst)
		}
		confirmed := "-"
		if o.Verify != nil {
			confirmed = strconv.FormatInt(o.Verify.Confirmed.Total(), 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Migration, o.Flags.Phase, bf, lag, confirmed, problemSummary(c, o))
	}
	_ = tw.Flush()
	writeClipped(w, b.Bytes(), width)
}

// problemSummary counts a migration's problems, the critical ones apart, and its unreadable
// sections.
func problemSummary(c palette, o admin.Overview) string {
	critical := 0
	for _, p := range o.Problems {
		if p.Severity == admin.SeverityCritical {
			critical++
		}
	}
	s := c.count(len(o.Problems))
	if critical > 0 {
		s += fmt.Sprintf(" (%d critical)", critical)
	}
	if n := len(o.Errors); n > 0 {
		s += fmt.Sprintf("; %d section(s) unreadable", n)
	}
	return s
}

// writeClipped writes text with every line cut to width columns (escape codes count none),
// ending a cut line with "…".
func writeClipped(w io.Writer, text []byte, width int) {
	for _, line := range strings.SplitAfter(string(text), "\n") {
		if line == "" {
			continue
		}
		_, _ = io.WriteString(w, clipLine(strings.TrimSuffix(line, "\n"), width)+"\n")
	}
}

// clipLine cuts s to width columns, counting a rune as one column and an ANSI escape as none,
// and ends a cut line with "…" (and a colour reset, should the cut fall in a painted cell).
func clipLine(s string, width int) string {
	if visibleWidth(s) <= width {
		return s
	}
	cols, escaped := 0, false
	for i, r := range s {
		switch {
		case r == '\x1b':
			escaped = true
		case escaped:
			escaped = r != 'm'
		case cols == width-1:
			cut := s[:i] + "…"
			if strings.Contains(cut, "\x1b[") {
				cut += ansiReset
			}
			return cut
		default:
			cols++
		}
	}
	return s
}

// visibleWidth is the columns s takes, escape codes left out.
func visibleWidth(s string) int {
	cols, escaped := 0, false
	for _, r := range s {
		switch {
		case r == '\x1b':
			escaped = true
		case escaped:
			escaped = r != 'm'
		default:
			cols++
		}
	}
	return cols
}

// sparkline draws the outstanding mismatches (confirmed and pending) of the drift points in
// at most width block characters, each the highest of the points it stands for.
func sparkline(ps []catalog.VerifyDriftPoint, width int) string {
	const blocks = "▁▂▃▄▅▆▇█"
	levels := []rune(blocks)
	n := len(ps)
	if n < width {
		width = n
	}
	vals := make([]int64, width)
	var top int64
	for i := range width {
		lo, hi := i*n/width, (i+1)*n/width
		for _, p := range ps[lo:hi] {
			vals[i] = max(vals[i], p.Confirmed+p.Pending)
		}
		top = max(top, vals[i])
	}
	var b strings.Builder
	for _, v := range vals {
		lvl := 0
		if top > 0 {
			lvl = int(math.Round(float64(v) / float64(top) * float64(len(levels)-1)))
		}
		b.WriteRune(levels[lvl])
	}
	return b.String()
}

func percent(part, whole int64) float64 {
	if whole <= 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

// shortDuration is d for a glance: tenths of a second under 10 s, seconds under an hour,
// minutes under two days, else days.
func shortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// shortID is the start of an id (a run's, a spec version), enough to tell them apart on a screen.
func shortID(id string) string {
	if len(id) > statusRunIDLen {
		return id[:statusRunIDLen]
	}
	return id
}
