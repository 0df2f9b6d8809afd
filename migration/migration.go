// Package migration is the runtime of one migration: a Runner owns the migration's spec, its
// stores, converge engine, shadow writer, shadow-read comparer and watchdog, gives the proxy
// its route, runs verifications, and supervises the long-running paths the phase calls for.
//
// The phase is read as a flags.Policy (the phase table as code). Runner.Run follows the
// migration's flags, the same ones the proxy obeys, and whenever they change starts the paths
// the new policy lists and stops the others; each path runs under a Supervisor that retries it
// with backoff and records its state, so Status can say what runs, what failed and since when.
// See docs/runtime.md.
package migration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/proxy"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/transform"
	"github.com/tandemdb/tandem/verify"
)

// Sentinel errors.
var (
	// ErrInvalidConfig means New was given a Config it cannot run (a required field missing,
	// a watchdog setting out of range); the error names the field.
	ErrInvalidConfig = errors.New("invalid migration config")
	// ErrRunning means Run was called while the runner is running already.
	ErrRunning = errors.New("migration runner already running")
	// ErrClosed means the runner was closed: it runs no more.
	ErrClosed = errors.New("migration runner closed")
	// ErrDuplicatePath means AddPath was given a path whose name the runner has already.
	ErrDuplicatePath = errors.New("path already registered")
)

// Defaults of Config.
const (
	DefaultWorkers         = 16
	DefaultQueueDepth      = 1024
	DefaultConvergeTimeout = 5 * time.Second
	DefaultPreReadLimit    = 10000
	DefaultPolicyCheck     = 100 * time.Millisecond
)

// Config wires a Runner.
type Config struct {
	// Spec is the migration. Required; its source must be a MongoDB collection keyed by _id
	// (the proxy takes part in no other).
	Spec *transform.Spec
	// Old is the old collection, reached the way the proxy reaches it (its upstream). Required.
	// The runner does not disconnect its client.
	Old *mongo.Collection
	// New is the new store. Required. The runner does not close it: whoever opened it closes
	// it, after Close.
	New adapters.Store
	// Catalog takes dead letters, mismatches and verification summaries and progress.
	// Required.
	Catalog *catalog.Catalog
	// Journal takes the keys the shadow writer could not converge. Required.
	Journal shadow.Journal
	// Flags evaluates the migration's flags (*flags.Evaluator): the runner follows the flags
	// the proxy obeys. Required.
	Flags proxy.FlagSource
	// Tenant is passed to flag evaluation. Optional; default none.
	Tenant string
	// Watchdog configures automatic rollback; its Migration and Logger are filled in. Optional;
	// default nil: no watchdog.
	Watchdog *flags.WatchdogConfig
	// Manager rolls the migration back for the watchdog. Required with Watchdog.
	Manager *flags.Manager
	// Metrics receives the engine's, writer's and comparer's counts. Optional; default:
	// unregistered collectors. One Metrics serves every runner of a process (they are
	// registered once).
	Metrics *shadow.Metrics
	// Logger receives the runner's logs, with the migration's name. Optional; default: discard.
	Logger *slog.Logger
	// Workers is the number of shadow-write converge workers. Optional; default 16.
	Workers int
	// QueueDepth is the queued keys per worker; keys beyond it go to the journal. Optional;
	// default 1024.
	QueueDepth int
	// ConvergeTimeout bounds one converge, pre-read or read from the new store. Optional;
	// default 5s.
	ConvergeTimeout time.Duration
	// ReadSettle is how long a shadow-read difference may take to converge before it counts
	// as a mismatch (shadow.ComparerConfig.Settle). Optional; default 0: no second recheck.
	ReadSettle time.Duration
	// PreReadLimit is the most keys an unkeyed write converges when writes converge
	// synchronously, and the most keys the journal worker resolves an unkeyed entry to; more
	// are left to the journal (or skipped by it). Optional; default 10000.
	PreReadLimit int
	// PolicyCheck is how often Run looks for changed flags (a cheap generation check; flags
	// are evaluated only when it moved). Optional; default 100ms.
	PolicyCheck time.Duration
	// Backoff is how a failed path waits before it runs again. Optional; default 500ms
	// doubling to 30s.
	Backoff Backoff
	// VerifyMetrics receives the verifier's counts and drift gauges. Optional; default:
	// unregistered collectors. One serves every runner of a process.
	VerifyMetrics *verify.Metrics
}

// Runner is one migration at run time. Build it with New, register extra paths with AddPath,
// give Route to the proxy, then Run it; Close it after the proxy has shut down.
type Runner struct {
	cfg      Config
	log      *slog.Logger
	name     string
	old      adapters.Store
	engine   *shadow.Engine
	writer   *shadow.Writer
	comparer *shadow.Comparer
	route    *proxy.Migration

	mu      sync.Mutex
	paths   []*registered
	shared  []*Supervisor
	values  flags.Values
	policy  flags.Policy
	since   time.Time          // when policy's phase was taken in
	stopRun context.CancelFunc // nil: Run is not running
	runDone chan struct{}
	closed  bool
}

// registered is a path and the phases it runs in.
type registered struct {
	wanted func(flags.Policy) bool
	sup    *Supervisor
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// New checks cfg, builds the migration's engine, shadow writer and comparer (their workers
// start now) and its watchdog, and returns a runner that runs no path until Run.
func New(cfg Config) (*Runner, error) {
	switch {
	case cfg.Spec == nil:
		return nil, invalid("Spec is required")
	case cfg.Spec.Source.Kind != transform.StoreMongoDB || cfg.Spec.Key.Source != "_id":
		return nil, invalid("migration %s: the source must be a MongoDB collection keyed by _id", cfg.Spec.Name)
	case cfg.Old == nil, cfg.New == nil:
		return nil, invalid("migration %s: Old and New are required", cfg.Spec.Name)
	case cfg.Catalog == nil:
		return nil, invalid("migration %s: Catalog is required", cfg.Spec.Name)
	case cfg.Journal == nil:
		return nil, invalid("migration %s: Journal is required", cfg.Spec.Name)
	case cfg.Flags == nil:
		return nil, invalid("migration %s: Flags is required", cfg.Spec.Name)
	case cfg.Watchdog != nil && cfg.Manager == nil:
		return nil, invalid("migration %s: a Watchdog needs a Manager", cfg.Spec.Name)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = shadow.NewMetrics(nil)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.QueueDepth <= 0 {
		cfg.QueueDepth = DefaultQueueDepth
	}
	if cfg.ConvergeTimeout <= 0 {
		cfg.ConvergeTimeout = DefaultConvergeTimeout
	}
	if cfg.PreReadLimit <= 0 {
		cfg.PreReadLimit = DefaultPreReadLimit
	}
	if cfg.PolicyCheck <= 0 {
		cfg.PolicyCheck = DefaultPolicyCheck
	}
	spec := cfg.Spec
	r := &Runner{cfg: cfg, name: spec.Name, log: cfg.Logger.With("migration", spec.Name), old: adapters.NewMongoStore(cfg.Old)}
	r.values = flags.Defaults()
	r.policy = flags.PolicyFor(r.values)
	var err error
	r.engine, err = shadow.NewEngine(shadow.Config{
		Migration: spec.Name, SpecVersion: spec.Version,
		Old: r.old, New: cfg.New, Forward: spec.Forward, Reverse: spec.Reverse,
		DeadLetters: cfg.Catalog, Metrics: cfg.Metrics, Log: r.log,
	})
	if err != nil {
		return nil, invalid("migration %s: %v", spec.Name, err)
	}
	var onStore, onRead func(bool)
	if cfg.Watchdog != nil {
		wcfg := *cfg.Watchdog
		wcfg.Migration, wcfg.Logger = spec.Name, r.log
		wd, err := flags.NewWatchdog(cfg.Manager, wcfg)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		onStore, onRead = wd.NewStoreOp, wd.ShadowRead
		r.paths = append(r.paths, &registered{wanted: runsPath(flags.PathWatchdog), sup: NewSupervisor(watchdogPath{wd}, cfg.Backoff, r.log)})
	}
	if r.writer, err = shadow.NewWriter(shadow.WriterConfig{
		Engine: r.engine, Journal: cfg.Journal, Namespace: spec.Source.Database + "." + spec.Source.Collection,
		Workers: cfg.Workers, Depth: cfg.QueueDepth, Timeout: cfg.ConvergeTimeout,
		OnNewStoreResult: onStore, Metrics: cfg.Metrics,
	}); err != nil {
		return nil, invalid("migration %s: %v", spec.Name, err)
	}
	if r.comparer, err = shadow.NewComparer(shadow.ComparerConfig{
		Engine: r.engine, Mismatches: cfg.Catalog, Timeout: cfg.ConvergeTimeout, Settle: cfg.ReadSettle,
		OnCompared: onRead, Metrics: cfg.Metrics,
	}); err != nil {
		_ = r.writer.Close(context.Background())
		return nil, invalid("migration %s: %v", spec.Name, err)
	}
	r.route = &proxy.Migration{
		Name: spec.Name, Database: spec.Source.Database, Collection: spec.Source.Collection,
		Writer: r.writer, Reader: r.comparer, New: r.engine, PreRead: proxy.MongoPreRead(cfg.Old),
		PreReadLimit: cfg.PreReadLimit, Timeout: cfg.ConvergeTimeout,
	}
	return r, nil
}

// Name is the migration's name.
func (r *Runner) Name() string { return r.name }

// Spec is the migration's spec.
func (r *Runner) Spec() *transform.Spec { return r.cfg.Spec }

// Engine is the migration's converge engine, for paths that converge keys.
func (r *Runner) Engine() *shadow.Engine { return r.engine }

// Stores returns the old and the new store, for paths that read them.
func (r *Runner) Stores() (old, new adapters.Store) { return r.old, r.cfg.New }

// Route is the proxy's route of the migration: give it to proxy.NewRoutes. The proxy must be
// shut down before Close.
func (r *Runner) Route() *proxy.Migration { return r.route }

// Close drains the shadow writer and the comparer (what they hold is converged or journaled,
// until ctx ends), then stops Run and waits for it. Call it after the proxy has shut down; the
// stores are the caller's to close afterwards.
func (r *Runner) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	var errs []error
	if err := r.writer.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := r.comparer.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	r.Stop()
	return errors.Join(errs...)
}

// watchdogPath runs the automatic-rollback watchdog (flags.Watchdog) as a path: started in
// the phases whose policy runs PathWatchdog, with a fresh window, so samples taken before
// never count.
type watchdogPath struct{ wd *flags.Watchdog }

func (watchdogPath) Name() string { return string(flags.PathWatchdog) }

func (p watchdogPath) Run(ctx context.Context) error {
	p.wd.Reset()
	p.wd.Run(ctx)
	return nil
}
