package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/migration"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/transform"
)

// backfillOptions tune the copy, for `tandem backfill run` and for the backfill path of
// `tandem run` and `tandem demo`.
type backfillOptions struct {
	workers       int           // default 4: partitions this process copies at once
	batch         int           // default 500: documents read, written and checkpointed at once
	partitions    int           // default 16: partitions of a new plan
	rate          string        // optional: documents/s for all processes, or "unlimited"
	bytesRate     string        // optional: bytes/s for all processes, or "unlimited"
	allowExisting bool          // start a new plan on a target that holds documents
	lease         time.Duration // default 30s
}

func (o *backfillOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&o.workers, "workers", 4, "partitions this process copies at once")
	f.IntVar(&o.batch, "batch", 500, "documents read, written and checkpointed at once")
	f.IntVar(&o.partitions, "partitions", 16, "partitions of a new plan (a source whose keys mix BSON types gets at least one per type)")
	f.StringVar(&o.rate, "rate", "", "limit in documents/s for all processes together, or unlimited (default: the catalog's, unlimited at first)")
	f.StringVar(&o.bytesRate, "bytes-rate", "", "limit in bytes/s of the target's documents for all processes together, or unlimited")
	f.BoolVar(&o.allowExisting, "allow-existing", false, "start on a target that already holds documents (the backfill cannot tell them from its own)")
	f.DurationVar(&o.lease, "lease", 30*time.Second, "how long a claim on a partition lasts without renewal (a crashed process's partitions are taken over after it)")
}

// config checks the options and returns the backfill.Config they describe, without stores.
func (o *backfillOptions) config() (backfill.Config, error) {
	switch {
	case o.workers < 1:
		return backfill.Config{}, usagef("--workers %d: must be 1 or more", o.workers)
	case o.batch < 1:
		return backfill.Config{}, usagef("--batch %d: must be 1 or more", o.batch)
	case o.partitions < 1:
		return backfill.Config{}, usagef("--partitions %d: must be 1 or more", o.partitions)
	case o.lease < 3*time.Second:
		return backfill.Config{}, usagef("--lease %s: must be 3s or more", o.lease)
	}
	cfg := backfill.Config{Workers: o.workers, Batch: o.batch, Partitions: o.partitions, AllowExisting: o.allowExisting, Lease: o.lease}
	var err error
	if cfg.Rate, err = parseRateFlag("--rate", o.rate); err != nil {
		return backfill.Config{}, err
	}
	if cfg.BytesRate, err = parseRateFlag("--bytes-rate", o.bytesRate); err != nil {
		return backfill.Config{}, err
	}
	return cfg, nil
}

// parseRateFlag reads a rate flag: empty (0: leave the catalog's), a positive number, or
// "unlimited".
func parseRateFlag(flag, s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	r, err := backfill.ParseRate(flag, strings.TrimSpace(s))
	if err != nil {
		return 0, usagef("%s %q: want a number more than 0, or unlimited", flag, s)
	}
	return r, nil
}

// newBackfillCmd is `tandem backfill`: run a copy, and control or watch one that runs.
func newBackfillCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backfill",
		Short: "Copy a migration's history into the new store, and control or watch the copy",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("backfill needs a subcommand: run, pause, resume, rate or status")
		},
	}
	cmd.AddCommand(newBackfillRunCmd(g))
	cmd.AddCommand(newBackfillControlCmds()...)
	return cmd
}

func newBackfillRunCmd(g *globalOptions) *cobra.Command {
	var (
		o              backfillOptions
		overrides      storeOverrides
		catalogURI     string
		catalogDB      string
		connectTimeout time.Duration
		dryRun         bool
		output         = outputFlag{textAlias: true}
	)
	cmd := &cobra.Command{
		Use:   "run SPEC",
		Short: "Copy every document of the spec's source, transformed, into its target; resumable",
		Long: `Copy the history of a migration: every document of the spec's source, transformed by its
forward steps, into its target, in partitions that any number of processes on one catalog share.
It runs until every partition is done (by this process or another) and exits 0; run it again after
a crash or Ctrl-C and it resumes from the checkpoints. The target is created when absent (with the
spec's indexes); a target that already holds documents is refused unless --allow-existing. Run it
while the proxy runs the migration in phase shadow or later, so that writes made during the copy
are converged on their own. With --dry-run it prints the counts, the partition plan and a
transformed sample, and writes nothing.`,
		Args: exactArgs(1, "SPEC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg, err := o.config()
			if err != nil {
				return err
			}
			switch {
			case connectTimeout <= 0:
				return usagef("--connect-timeout %s: must be more than 0", connectTimeout)
			case catalogDB == "":
				return usagef("--catalog-db must name a database")
			}
			spec, err := loadSpecFile(args[0], overrides)
			if err != nil {
				return err
			}
			if spec.Source.Kind != transform.StoreMongoDB {
				return usagef("spec %s: the backfill copies from a MongoDB collection", spec.File)
			}
			ctx := cmd.Context()
			run, err := openBackfill(ctx, spec, cfg, catalogURI, catalogDB, connectTimeout, !dryRun, log)
			if err != nil {
				return err
			}
			defer run.close()
			out := cmd.OutOrStdout()
			if dryRun {
				plan, err := backfill.Plan(ctx, run.cfg)
				if err != nil {
					return fmt.Errorf("backfill %s: dry run: %w", spec.Name, err)
				}
				return printPlan(out, output.isJSON(), spec, plan)
			}
			return run.copy(ctx, out, output.isJSON())
		},
	}
	o.addFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&overrides.sourceURI, "source-uri", "", "connection string of the source, instead of the spec's")
	f.StringVar(&overrides.targetURI, "target-uri", "", "connection string of the target, instead of the spec's (a DynamoDB target: its endpoint URL)")
	f.StringVar(&catalogURI, "catalog", "", "connection string of the catalog's MongoDB (default: the source's)")
	f.StringVar(&catalogDB, "catalog-db", catalog.DefaultDatabase, "database of the catalog")
	f.DurationVar(&connectTimeout, "connect-timeout", defaultConnectTimeout, "how long reaching the catalog and each store may take at start-up")
	f.BoolVar(&dryRun, "dry-run", false, "print the counts, the partition plan and a transformed sample; write nothing")
	addOutputFlag(cmd, &output, "JSON lines: the progress every few seconds, then the summary; a dry run prints one JSON document")
	cmd.ValidArgsFunction = specFiles
	return cmd
}

// loadSpecFile reads and parses a spec named on the command line and applies the overrides.
func loadSpecFile(path string, overrides storeOverrides) (*transform.Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("spec %s: %v", path, errors.Unwrap(err))
	}
	spec, err := transform.Parse(path, data)
	if err != nil {
		return nil, usagef("spec %s: %s", path, oneLine(err.Error()))
	}
	if err := overrides.apply(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// backfillRun is a backfill with the stores and catalog it opened.
type backfillRun struct {
	spec    *transform.Spec
	cfg     backfill.Config
	log     *slog.Logger
	closers []func()
}

// openBackfill opens the spec's stores and the catalog (on catalogURI, default the source's
// deployment) and builds the backfill's config; register records the spec in the catalog (a
// dry run writes nothing).
func openBackfill(ctx context.Context, spec *transform.Spec, cfg backfill.Config, catalogURI, catalogDB string,
	timeout time.Duration, register bool, log *slog.Logger) (_ *backfillRun, err error) {
	run := &backfillRun{spec: spec, log: log}
	defer func() {
		if err != nil {
			run.close()
		}
	}()
	old, err := openSource(ctx, spec, timeout)
	if err != nil {
		return nil, err
	}
	run.closers = append(run.closers, func() { _ = old.Close(context.Background()) })
	target, err := openTarget(ctx, spec, timeout)
	if err != nil {
		return nil, err
	}
	run.closers = append(run.closers, func() { _ = target.Close(context.Background()) })
	what := "the catalog (--catalog, default the spec's source)"
	if catalogURI == "" {
		catalogURI = spec.Source.URI
	} else {
		what = "the catalog (--catalog)"
	}
	client, err := connectMongo(ctx, what, catalogURI, timeout)
	if err != nil {
		return nil, err
	}
	run.closers = append(run.closers, func() { _ = client.Disconnect(context.Background()) })
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cat, err := catalog.Open(openCtx, client, catalog.WithDatabase(catalogDB))
	if err != nil {
		return nil, fmt.Errorf("opening the catalog (database %s on %s): %w", catalogDB, redactURI(catalogURI), err)
	}
	if register {
		if _, err := cat.RegisterSpec(openCtx, spec.Name, spec.Version, spec.Redacted(), "tandem backfill "+processName()); err != nil {
			return nil, fmt.Errorf("registering %s in the catalog: %w", spec.Name, err)
		}
	}
	cfg.Migration, cfg.Spec, cfg.Old, cfg.New, cfg.Catalog, cfg.Log = spec.Name, spec, old, target, cat, log
	if cfg.Reconverge, err = reconverger(spec, old, target, cat, log); err != nil {
		return nil, err
	}
	run.cfg = cfg
	return run, nil
}

// reconverger is the backfill's Reconverge: converge(K) forward through a converge engine of
// its own, a dead letter being no error.
func reconverger(spec *transform.Spec, old, target adapters.Store, cat *catalog.Catalog, log *slog.Logger) (func(context.Context, adapters.Key) error, error) {
	engine, err := convergeEngine(spec, old, target, cat, log)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, k adapters.Key) error {
		_, err := engine.Converge(ctx, k, shadow.Forward)
		return err
	}, nil
}

// convergeEngine is a converge engine of spec's stores for a process of its own (unregistered
// metrics), dead letters going to cat.
func convergeEngine(spec *transform.Spec, old, target adapters.Store, cat *catalog.Catalog, log *slog.Logger) (*shadow.Engine, error) {
	return shadow.NewEngine(shadow.Config{
		Migration: spec.Name, SpecVersion: spec.Version, Old: old, New: target,
		Forward: spec.Forward, Reverse: spec.Reverse, DeadLetters: cat,
		Metrics: shadow.NewMetrics(prometheus.NewRegistry()), Log: log.With("migration", spec.Name),
	})
}

func (r *backfillRun) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// copy runs the backfill to its end, showing its progress on out: JSON lines when jsonOut.
func (r *backfillRun) copy(ctx context.Context, out io.Writer, jsonOut bool) error {
	b, err := backfill.New(r.cfg)
	if err != nil {
		return usageError{err}
	}
	done := make(chan struct{})
	shown := make(chan struct{})
	go func() {
		defer close(shown)
		showProgress(ctx, out, jsonOut, r.cfg.Catalog, r.spec.Name, done)
	}()
	err = b.Run(ctx)
	close(done)
	<-shown
	sum := b.Summary()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("backfill %s interrupted after copying %d documents here; run it again to resume", r.spec.Name, sum.Copied)
		}
		return fmt.Errorf("backfill %s: %w", r.spec.Name, err)
	}
	if jsonOut {
		return writeJSONLine(out, sum)
	}
	p := sum.Progress
	fmt.Fprintf(out, "backfill %s done: %d documents (%s) copied here in %s, %d partition(s) here; overall %d of %d partitions, %d copied, %d dead-lettered, %d re-converged\n",
		r.spec.Name, sum.Copied, bytesText(sum.Bytes), sum.Elapsed.Round(time.Millisecond), sum.Partitions,
		p.PartitionsDone, p.Partitions, p.Copied, p.DeadLettered, p.Reconverged)
	if p.DeadLettered > 0 {
		fmt.Fprintf(out, "  %d document(s) could not be copied: they are dead letters in the catalog (%s.dead_letters), with the reason\n", p.DeadLettered, catalog.DefaultDatabase)
	}
	return nil
}

// showProgress reports the backfill's progress until done closes: a bar on a terminal, a line
// every few seconds otherwise, a JSON line with --output json.
func showProgress(ctx context.Context, out io.Writer, jsonOut bool, cat *catalog.Catalog, migration string, done <-chan struct{}) {
	interval := 5 * time.Second
	var bar *progressbar.ProgressBar
	if !jsonOut && isTerminal(out) {
		interval = 500 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(out)
			}
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p, err := backfill.Status(ctx, cat, migration)
		if err != nil {
			continue // no plan yet, or the catalog away for a moment
		}
		switch {
		case jsonOut:
			_ = writeJSONLine(out, p)
		case interval < time.Second:
			if bar == nil {
				bar = progressbar.NewOptions64(max(p.Estimate, 1), progressbar.OptionSetWriter(out),
					progressbar.OptionSetDescription("backfill "+migration), progressbar.OptionShowCount(),
					progressbar.OptionShowIts(), progressbar.OptionSetItsString("docs"), progressbar.OptionSetWidth(30))
			}
			_ = bar.Set64(min(p.Copied+p.DeadLettered, max(p.Estimate, 1)))
		default:
			fmt.Fprintln(out, progressLine(p))
		}
	}
}

// progressLine is one line of a backfill's progress, for logs and pipes.
func progressLine(p backfill.Progress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "backfill %s: %s, %d/%d partitions, %d", p.Migration, p.State, p.PartitionsDone, p.Partitions, p.Copied)
	if p.Estimate > 0 {
		fmt.Fprintf(&b, " of ~%d documents (%.0f%%)", p.Estimate, 100*float64(p.Copied)/float64(p.Estimate))
	} else {
		b.WriteString(" documents")
	}
	fmt.Fprintf(&b, ", %s, %.0f docs/s", bytesText(p.Bytes), p.DocsPerSec)
	if p.ETA > 0 {
		fmt.Fprintf(&b, ", ETA %s", p.ETA.Round(time.Second))
	}
	if p.Paused {
		b.WriteString(", PAUSED")
	}
	if p.DeadLettered > 0 || p.Errors > 0 {
		fmt.Fprintf(&b, ", %d dead-lettered, %d errors", p.DeadLettered, p.Errors)
	}
	return b.String()
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// printPlan prints a dry run's result.
func printPlan(out io.Writer, jsonOut bool, spec *transform.Spec, p backfill.PlanResult) error {
	if jsonOut {
		return writeJSON(out, p)
	}
	state := "a new plan (nothing stored: a dry run writes nothing)"
	if p.Stored {
		state = "the stored plan " + p.PlanID
	}
	fmt.Fprintf(out, "backfill %s (%s → %s), dry run: ~%d source documents; %s\n", spec.Name, spec.Source, spec.Target, p.Estimate, state)
	for _, c := range p.Classes {
		fmt.Fprintf(out, "  keys of type %-9s %d\n", c.Class, c.Count)
	}
	target := "absent: it would be created"
	switch {
	case p.TargetExists && p.TargetEmpty:
		target = "exists, empty"
	case p.TargetExists:
		target = "exists and holds documents: a new plan needs --allow-existing"
	}
	fmt.Fprintf(out, "  target: %s\n  %d partition(s):\n", target, len(p.Partitions))
	for _, part := range p.Partitions {
		if part.Segments > 0 {
			fmt.Fprintf(out, "    [%d] scan segment %d of %d, ~%d documents\n", part.Index, part.Segment, part.Segments, part.Estimate)
			continue
		}
		bound := func(v any, open string) string {
			if v == nil {
				return open
			}
			return adapters.KeyString(v)
		}
		fmt.Fprintf(out, "    [%d] keys of type %s from %s to %s, ~%d documents\n", part.Index, part.Class,
			bound(part.Min, "the first"), bound(part.Max, "the last"), part.Estimate)
	}
	if len(p.Sample) > 0 {
		fmt.Fprintf(out, "  sample:\n")
	}
	for _, s := range p.Sample {
		if s.Error != "" {
			fmt.Fprintf(out, "    %s: would be dead-lettered: %s\n", s.Key, s.Error)
			continue
		}
		fmt.Fprintf(out, "    %s → %s\n", s.Key, extJSON(s.Target))
	}
	return nil
}

func extJSON(d bson.D) string {
	b, err := bson.MarshalExtJSON(d, false, false)
	if err != nil {
		return fmt.Sprintf("%v", d)
	}
	return string(b)
}

// backfillPath is a migration's backfill as a path of its runner: it runs in the phases whose
// policy lists the backfill (shadow, dual) and is done when every partition is.
type backfillPath struct{ b *backfill.Backfill }

func (p backfillPath) Name() string                  { return string(flags.PathBackfill) }
func (p backfillPath) Run(ctx context.Context) error { return p.b.Run(ctx) }

// addBackfill gives runner r its backfill path. The target is checked now, before the proxy's
// converges write to it: when no plan is stored yet, a target that holds documents is refused
// unless --allow-existing; the path may then start on what the converges wrote since.
func (ms *migrationStack) addBackfill(ctx context.Context, o *migrationOptions, r *migration.Runner, reg prometheus.Registerer, log *slog.Logger) error {
	cfg, err := o.backfill.config()
	if err != nil {
		return err
	}
	spec := r.Spec()
	old, target := r.Stores()
	if _, err := backfill.Status(ctx, ms.catalog, spec.Name); errors.Is(err, backfill.ErrNotStarted) && !cfg.AllowExisting {
		var n int64
		exists := true
		if pv, ok := target.(adapters.Provisioner); ok {
			if exists, err = pv.Exists(ctx); err != nil {
				return fmt.Errorf("spec %s: looking for target %s: %w", spec.File, spec.Target, err)
			}
		}
		if exists {
			if n, err = target.EstimateCount(ctx); err != nil {
				return fmt.Errorf("spec %s: counting the documents of target %s: %w", spec.File, spec.Target, err)
			}
		}
		if n > 0 {
			return fmt.Errorf("spec %s: target %s holds %d document(s) and no backfill of %s has started: empty it, or pass --allow-existing if they are this migration's", spec.File, spec.Target, n, spec.Name)
		}
	} else if err != nil && !errors.Is(err, backfill.ErrNotStarted) {
		return fmt.Errorf("spec %s: reading the backfill's state: %w", spec.File, err)
	}
	cfg.AllowExisting = true // what the target holds from here on, this migration wrote
	engine := r.Engine()
	cfg.Migration, cfg.Spec, cfg.Old, cfg.New, cfg.Catalog = spec.Name, spec, old, target, ms.catalog
	cfg.Log, cfg.Metrics = log.With("migration", spec.Name), ms.backfillMetrics(reg)
	cfg.Reconverge = func(ctx context.Context, k adapters.Key) error {
		_, err := engine.Converge(ctx, k, shadow.Forward)
		return err
	}
	b, err := backfill.New(cfg)
	if err != nil {
		return usageError{err}
	}
	return r.AddPath(backfillPath{b}, nil)
}

// backfillMetrics are the backfill's collectors, registered once per process.
func (ms *migrationStack) backfillMetrics(reg prometheus.Registerer) *backfill.Metrics {
	if ms.bfMetrics == nil {
		ms.bfMetrics = backfill.NewMetrics(reg)
	}
	return ms.bfMetrics
}
