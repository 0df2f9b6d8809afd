package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/migration"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/transform"
)

// The --cdc modes of tandem run.
const (
	cdcAuto = "auto" // run the tailers where the store has change streams; warn where it has none
	cdcOn   = "on"   // run them, and refuse to start where a store has no change streams
	cdcOff  = "off"  // run none
)

// cdcStartTimeout bounds taking a tailer's start position at start-up.
const cdcStartTimeout = 30 * time.Second

// Server codes that mean "this deployment has no change streams": NotImplemented (FerretDB),
// CommandNotSupported, and the standalone MongoDB's "$changeStream is only supported on replica
// sets" (40573).
var noChangeStreamCodes = []int{238, 115, 40573}

// The --cdc-apply modes of tandem run: who converges the forward stream's changes.
const (
	cdcApplyTailer  = "tailer"  // the elected tailer converges them itself
	cdcApplyJournal = "journal" // it publishes their keys to the journal; the journal workers converge them
)

// addCDC registers the runner's change-capture paths: forward (the old collection's change
// stream → converge forward, with the backfill interplay rule, or → the journal with
// --cdc-apply journal) and, when the spec has reverse steps, reverse (the new collection's change
// stream, or the new DynamoDB table's stream → converge reverse). Each takes its start position
// now, before any path runs, so that the backfill, which starts after, misses nothing between
// the two.
func (ms *migrationStack) addCDC(ctx context.Context, o *migrationOptions, r *migration.Runner, journal cdc.Appender, reg prometheus.Registerer, log *slog.Logger) error {
	if o.cdc == "" || o.cdc == cdcOff {
		return nil
	}
	spec := r.Spec()
	old, target := r.Stores()
	if _, ok := old.(*adapters.MongoStore); !ok {
		return fmt.Errorf("spec %s: forward change capture needs a MongoDB source", spec.File)
	}
	metrics := ms.cdcMetricsFor(reg)
	onSkip := func(dir shadow.Direction) func(string) {
		return func(string) { metrics.Skipped(spec.Name, dir.String(), "unknown_kind") }
	}
	fwd, err := changeSource(old, log, onSkip(shadow.Forward))
	if err != nil {
		return fmt.Errorf("spec %s: forward-cdc: %w", spec.File, err)
	}
	var pub cdc.KeyPublisher
	if o.cdcApply == cdcApplyJournal {
		if pub, err = cdc.NewPublisher(journal, spec.Name, spec.Source.Database+"."+spec.Source.Collection); err != nil {
			return err
		}
		if !o.journalWorker {
			log.Warn("the forward tailer publishes to the journal and this process runs no journal worker (--journal-worker=false): the keys wait there for the workers of other processes",
				"migration", spec.Name)
		}
	}
	if err := ms.addTailer(ctx, o, r, fwd, shadow.Forward, pub, reg, log); err != nil {
		return err
	}
	if len(spec.ReverseSteps()) == 0 {
		log.Warn("no reverse change capture: the spec has no reverse steps", "migration", spec.Name)
		return nil
	}
	rev, err := changeSource(target, log, onSkip(shadow.Reverse))
	if err != nil {
		log.Warn("no reverse change capture: writes made straight into the new store after cutover do not reach old",
			"migration", spec.Name, "target", spec.Target.String(), "err", err)
		return nil
	}
	return ms.addTailer(ctx, o, r, rev, shadow.Reverse, nil, reg, log)
}

// changeSource returns the stream of changes of store: a MongoDB collection's change stream,
// or a DynamoDB table's stream, read with a client built from the store's own AWS
// configuration (its region, credentials and endpoint).
func changeSource(store adapters.Store, log *slog.Logger, onSkip func(kind string)) (cdc.Source, error) {
	switch st := store.(type) {
	case *adapters.MongoStore:
		return cdc.NewChangeStream(cdc.ChangeStreamConfig{Collection: st.Collection(), Logger: log, OnSkip: onSkip})
	case *adapters.DynamoStore:
		return cdc.NewDynamoStream(cdc.DynamoStreamConfig{Streams: dynamodbstreams.NewFromConfig(st.AWSConfig()), Table: st, Log: log})
	default:
		return nil, fmt.Errorf("a %T has no change stream tandem can read", store)
	}
}

// addTailer registers the tailer of src in direction dir (publishing its keys with pub, when
// not nil) and, in reverse, the drain that runs after a rollback.
func (ms *migrationStack) addTailer(ctx context.Context, o *migrationOptions, r *migration.Runner, src cdc.Source,
	dir shadow.Direction, pub cdc.KeyPublisher, reg prometheus.Registerer, log *slog.Logger) error {
	spec := r.Spec()
	cfg := cdc.TailerConfig{
		Migration: spec.Name, Direction: dir, Source: src, Engine: r.Engine(), Publisher: pub, Checkpoints: ms.catalog,
		Leases:      ms.catalog, // one tailer per path among every tandem run of the catalog
		LagReporter: ms.catalog, Metrics: ms.cdcMetricsFor(reg), Logger: log,
		ResyncCommand: fmt.Sprintf("tandem cdc resync %s --direction %s --reason TEXT", spec.File, dir),
	}
	if dir == shadow.Forward {
		cfg.Interplay = cdc.NewBackfillInterplay(ms.catalog, spec.Name)
	}
	t, err := cdc.NewTailer(cfg)
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, cdcStartTimeout)
	defer cancel()
	st, run, err := ms.prepare(startCtx, o, r, t, src, log)
	if err != nil || !run {
		return err
	}
	if dir == shadow.Reverse {
		if st != nil {
			if err := ms.refreshReverse(startCtx, spec, src, *st, log); err != nil {
				return err
			}
		}
		// After a rollback the reverse path stops at once; the drain converges what new's
		// stream still holds (the lag), once, in the phases that do not run the reverse path.
		cfg.UntilCaughtUp, cfg.Name = true, pathReverseDrain
		drain, err := cdc.NewTailer(cfg)
		if err != nil {
			return err
		}
		if err := r.AddPath(drain, func(p flags.Policy) bool { return !p.Runs(flags.PathReverseCDC) }); err != nil {
			return err
		}
	}
	return r.AddPath(t, nil) // the phases whose policy lists forward-cdc or reverse-cdc
}

// prepare saves the tailer's start position and returns the path's record, and whether the
// path runs: not with --cdc auto on a store without change streams. The record is nil for a
// DynamoDB table that does not exist yet: the backfill creates it with a stream, and the
// reverse drain, which runs in the phases before cutover, takes the position on its first run
// after that (until then the table holds nothing to miss).
func (ms *migrationStack) prepare(ctx context.Context, o *migrationOptions, r *migration.Runner, t *cdc.Tailer, src cdc.Source, log *slog.Logger) (*catalog.CDCStream, bool, error) {
	spec := r.Spec()
	if _, target := r.Stores(); t.Name() == cdc.PathReverse {
		if dyn, ok := target.(*adapters.DynamoStore); ok {
			exists, err := dyn.Exists(ctx)
			if err != nil {
				return nil, false, fmt.Errorf("spec %s: %s: %w", spec.File, t.Name(), err)
			}
			if !exists {
				log.Info("the new table does not exist yet: the reverse path takes its start position once the backfill has created it (with a stream)",
					"migration", spec.Name, "table", dyn.Table())
				return nil, true, nil
			}
		}
	}
	st, err := t.Prepare(ctx)
	switch {
	case err == nil:
		return &st, true, nil
	case o.cdc == cdcAuto && noChangeStreams(err):
		log.Warn("no change streams on this store: change capture does not run (--cdc on makes this an error)",
			"migration", spec.Name, "path", t.Name(), "source", src.Name(), "err", err)
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("spec %s: %s: %w", spec.File, t.Name(), err)
}

// pathReverseDrain names the drain of the reverse stream after a rollback.
const pathReverseDrain = "reverse-cdc-drain"

// refreshReverse moves the reverse path's start to now when it has never applied a change and
// the migration has not reached cutover: until then new holds only what tandem wrote from old,
// which the reverse path would converge back for nothing, and which a stale position would make
// it read through the oplog at cutover (or find gone: history lost).
func (ms *migrationStack) refreshReverse(ctx context.Context, spec *transform.Spec, src cdc.Source, st catalog.CDCStream, log *slog.Logger) error {
	if st.Applied > 0 || st.State != catalog.CDCRunning {
		return nil
	}
	m, err := ms.catalog.Migration(ctx, spec.Name)
	if err != nil {
		return err
	}
	switch m.Phase {
	case "", flags.PhaseOff, flags.PhaseShadow, flags.PhaseDual:
	default:
		return nil
	}
	pos, err := src.Start(ctx)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// A DynamoDB stream is read to its end for an exact position, which a table the
		// backfill has just filled can make slow; the older position is as correct, only older.
		log.Warn("reverse change capture keeps its older start position: taking a fresh one did not finish in time; at cutover the reverse path reads from the older one (a DynamoDB stream keeps records 24 hours, an oplog its window)",
			"migration", spec.Name, "source", src.Name(), "timeout", cdcStartTimeout, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("spec %s: reverse-cdc: %w", spec.File, err)
	}
	if _, err := ms.catalog.ResetCDCStream(ctx, spec.Name, cdc.PathReverse, src.Name(), pos, "start refreshed at start-up, before cutover"); err != nil {
		return err
	}
	log.Info("reverse change capture starts from now (nothing applied yet, phase before cutover)", "migration", spec.Name, "phase", m.Phase)
	return nil
}

// noChangeStreams reports whether err says the store has no change streams: a MongoDB
// deployment without them, or a DynamoDB table without an enabled stream.
func noChangeStreams(err error) bool {
	if errors.Is(err, cdc.ErrNoStream) {
		return true
	}
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range noChangeStreamCodes {
		if se.HasErrorCode(c) {
			return true
		}
	}
	return false
}

// cdcMetricsFor returns the tailers' collectors, registered once per process.
func (ms *migrationStack) cdcMetricsFor(reg prometheus.Registerer) *cdc.TailerMetrics {
	if ms.cdcMetrics == nil {
		ms.cdcMetrics = cdc.NewTailerMetrics(reg)
	}
	return ms.cdcMetrics
}

// newCDCCmd is `tandem cdc`: the state of change capture, and its recovery.
func newCDCCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cdc",
		Short: "Show the state of a migration's change capture, or resync it after history was lost",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("cdc needs a subcommand: status or resync")
		},
	}
	cmd.AddCommand(newCDCStatusCmd(), newCDCResyncCmd(g))
	return cmd
}

// cdcCatalogFlags are the flags that reach the catalog directly.
type cdcCatalogFlags struct {
	catalogURI     string
	catalogDB      string
	connectTimeout time.Duration
}

func (c *cdcCatalogFlags) add(cmd *cobra.Command, def string) {
	f := cmd.Flags()
	f.StringVar(&c.catalogURI, "catalog", "", "connection string of the catalog's MongoDB"+def)
	f.StringVar(&c.catalogDB, "catalog-db", catalog.DefaultDatabase, "database of the catalog")
	f.DurationVar(&c.connectTimeout, "connect-timeout", defaultConnectTimeout, "how long reaching the catalog and each store may take")
}

func (c *cdcCatalogFlags) open(ctx context.Context) (*catalog.Catalog, func(), error) {
	switch {
	case c.catalogURI == "":
		return nil, nil, usagef("--catalog is required")
	case c.catalogDB == "":
		return nil, nil, usagef("--catalog-db must name a database")
	case c.connectTimeout <= 0:
		return nil, nil, usagef("--connect-timeout %s: must be more than 0", c.connectTimeout)
	}
	client, err := connectMongo(ctx, "the catalog (--catalog)", c.catalogURI, c.connectTimeout)
	if err != nil {
		return nil, nil, err
	}
	closeFn := func() { _ = client.Disconnect(context.Background()) }
	cat, err := catalog.Open(ctx, client, catalog.WithDatabase(c.catalogDB))
	if err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("opening the catalog (database %s on %s): %w", c.catalogDB, redactURI(c.catalogURI), err)
	}
	return cat, closeFn, nil
}

func newCDCStatusCmd() *cobra.Command {
	var cf cdcCatalogFlags
	var output outputFlag
	cmd := &cobra.Command{
		Use:   "status MIGRATION --catalog URI",
		Short: "Print each change-capture path of a migration: state, checkpoint, changes applied",
		Args:  exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cat, closeFn, err := cf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			streams, err := cat.CDCStreams(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return printResult(out, &output, cdcStatusJSON(args[0], streams), func() { printCDCStreams(out, colorsFor(cmd, out), args[0], streams) })
		},
	}
	cf.add(cmd, " (required)")
	addOutputFlag(cmd, &output, `one JSON document: {"migration":…,"paths":[…]}`)
	cmd.ValidArgsFunction = cobra.NoFileCompletions // the names are in the catalog, not asked here
	return cmd
}

// cdcStatus is what tandem cdc status --output json prints.
type cdcStatus struct {
	Migration string          `json:"migration"`
	Paths     []cdcPathStatus `json:"paths"` // empty before tandem run took the start positions
}

type cdcPathStatus struct {
	Path      string    `json:"path"` // forward-cdc or reverse-cdc
	State     string    `json:"state"`
	StateAt   time.Time `json:"state_at"`
	Detail    string    `json:"detail,omitempty"` // why the state, and the way out
	Source    string    `json:"source"`
	Applied   int64     `json:"applied"`            // changes converged, over every run
	NewestAt  time.Time `json:"newest_at,omitzero"` // the source time of the newest change converged
	UpdatedBy string    `json:"updated_by"`
	UpdatedAt time.Time `json:"updated_at"`
}

func cdcStatusJSON(migration string, streams []catalog.CDCStream) cdcStatus {
	st := cdcStatus{Migration: migration, Paths: make([]cdcPathStatus, len(streams))}
	for i, s := range streams {
		st.Paths[i] = cdcPathStatus{Path: s.Path, State: s.State, StateAt: s.StateAt, Detail: s.Detail, Source: s.Source,
			Applied: s.Applied, NewestAt: s.At, UpdatedBy: s.UpdatedBy, UpdatedAt: s.UpdatedAt}
	}
	return st
}

func printCDCStreams(w io.Writer, c palette, migration string, streams []catalog.CDCStream) {
	if len(streams) == 0 {
		fmt.Fprintf(w, "%s: no change capture has started (tandem run takes the start positions)\n", migration)
		return
	}
	for _, s := range streams {
		newest := "none yet"
		if !s.At.IsZero() {
			newest = s.At.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s %s: %s since %s, %d changes applied, newest from %s, source %s\n", migration, s.Path, c.state(s.State),
			s.StateAt.Format(time.RFC3339), s.Applied, newest, s.Source)
		if s.Detail != "" {
			fmt.Fprintf(w, "  %s\n", s.Detail)
		}
	}
}

func newCDCResyncCmd(g *globalOptions) *cobra.Command {
	var (
		bo        backfillOptions
		overrides storeOverrides
		cf        cdcCatalogFlags
		direction string
		reason    string
		output    = outputFlag{textAlias: true}
	)
	cmd := &cobra.Command{
		Use:   "resync SPEC --direction forward|reverse --reason TEXT",
		Short: "Recover change capture that lost its history: a fresh position, then a new full copy",
		Long: `Recover a change-capture path stopped in state history_lost (or invalidated, once the collection
is back): it takes the stream's current position and saves it as the path's checkpoint, then copies
everything again so that nothing changed in the lost stretch stays behind. Forward: the backfill's plan
is retired and a new backfill runs to its end (as tandem backfill run --allow-existing). Reverse: every
document of the new store is converged into the old one. A running tandem run picks the path up at its
next restart (its supervisor retries it within 30 s). The resync is recorded in the audit trail.`,
		Args: exactArgs(1, "SPEC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			var dir shadow.Direction
			switch direction {
			case "forward":
				dir = shadow.Forward
			case "reverse":
				dir = shadow.Reverse
			default:
				return usagef("--direction %q: want forward or reverse", direction)
			}
			if reason == "" {
				return usagef("--reason is required: it goes into the audit trail")
			}
			cfg, err := bo.config()
			if err != nil {
				return err
			}
			spec, err := loadSpecFile(args[0], overrides)
			if err != nil {
				return err
			}
			if spec.Source.Kind != transform.StoreMongoDB {
				return usagef("spec %s: resync needs a MongoDB source", spec.File)
			}
			cfg.AllowExisting = true
			run, err := openBackfill(cmd.Context(), spec, cfg, cf.catalogURI, cf.catalogDB, cf.connectTimeout, true, log)
			if err != nil {
				return err
			}
			defer run.close()
			return resync(cmd.Context(), cmd.OutOrStdout(), run, dir, "tandem cdc resync "+processName(), reason, output.isJSON())
		},
	}
	bo.addFlags(cmd)
	cf.add(cmd, " (default: the spec's source)")
	f := cmd.Flags()
	f.StringVar(&overrides.sourceURI, "source-uri", "", "connection string of the source, instead of the spec's")
	f.StringVar(&overrides.targetURI, "target-uri", "", "connection string of the target, instead of the spec's")
	f.StringVar(&direction, "direction", "", "the path to resync: forward (old → new) or reverse (new → old)")
	_ = cmd.RegisterFlagCompletionFunc("direction", fixedValues("forward", "reverse"))
	cmd.ValidArgsFunction = specFiles
	f.StringVar(&reason, "reason", "", "why (recorded in the audit trail; required)")
	addOutputFlag(cmd, &output, `JSON lines: {"event":"resync_started",…}, then a forward resync's backfill as tandem backfill run prints it, or a reverse one's {"event":"done",…}`)
	return cmd
}

// resync takes a fresh position of the path's stream, saves it, and copies everything again in
// the path's direction.
func resync(ctx context.Context, out io.Writer, run *backfillRun, dir shadow.Direction, who, why string, jsonOut bool) error {
	spec, cat := run.spec, run.cfg.Catalog
	store := run.cfg.Old
	path := cdc.PathForward
	if dir == shadow.Reverse {
		store, path = run.cfg.New, cdc.PathReverse
	}
	src, err := changeSource(store, run.log, nil)
	if err != nil {
		return fmt.Errorf("spec %s: resync %s: %w", spec.File, path, err)
	}
	pos, err := src.Start(ctx)
	if err != nil {
		return fmt.Errorf("resync %s %s: taking a fresh position: %w", spec.Name, path, err)
	}
	if _, err := cat.ResyncCDCStream(ctx, spec.Name, path, src.Name(), pos, who, why); err != nil {
		return err
	}
	if jsonOut {
		if err := writeJSONLine(out, resyncEvent{Migration: spec.Name, Path: path, Event: "resync_started", Source: src.Name()}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "%s %s: resumes from a fresh position of %s; copying everything again\n", spec.Name, path, src.Name())
	}
	if dir == shadow.Forward {
		if _, err := cat.RetireBackfillPlan(ctx, spec.Name); err != nil {
			return err
		}
		return run.copy(ctx, out, jsonOut)
	}
	n, err := convergeAll(ctx, run, dir)
	if err != nil {
		return fmt.Errorf("resync %s %s: %w", spec.Name, path, err)
	}
	if jsonOut {
		return writeJSONLine(out, resyncEvent{Migration: spec.Name, Path: path, Event: "done", Converged: &n})
	}
	fmt.Fprintf(out, "resync %s %s done: %d documents of the new store converged into the old one\n", spec.Name, path, n)
	return nil
}

// resyncEvent is a JSON line of tandem cdc resync --output json that is not the backfill's.
type resyncEvent struct {
	Migration string `json:"migration"`
	Path      string `json:"path"`
	Event     string `json:"event"` // resync_started, or done (reverse)
	Source    string `json:"source,omitempty"`
	Converged *int64 `json:"converged,omitempty"` // documents converged into old (reverse, done)
}

// convergeAll converges in direction dir every key of the new store, then every key of the old
// one (which removes from old what new no longer holds), a batch at a time.
func convergeAll(ctx context.Context, run *backfillRun, dir shadow.Direction) (int64, error) {
	engine, err := shadow.NewEngine(shadow.Config{
		Migration: run.spec.Name, SpecVersion: run.spec.Version, Old: run.cfg.Old, New: run.cfg.New,
		Forward: run.spec.Forward, Reverse: run.spec.Reverse, DeadLetters: run.cfg.Catalog, Log: run.log,
	})
	if err != nil {
		return 0, err
	}
	var n int64
	for _, store := range []adapters.Store{run.cfg.New, run.cfg.Old} {
		err = store.Scan(ctx, adapters.Partition{}, adapters.ScanOptions{Batch: 200}, func(docs []bson.D) error {
			keys := make([]adapters.Key, 0, len(docs))
			for _, d := range docs {
				k, err := store.KeyOf(d)
				if err != nil {
					return err
				}
				keys = append(keys, k)
			}
			if _, err := engine.ConvergeBatch(ctx, keys, dir); err != nil {
				return err
			}
			n += int64(len(keys))
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
