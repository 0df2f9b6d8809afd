package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/migration"
	"github.com/tandemdb/tandem/proxy"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/transform"
	"github.com/tandemdb/tandem/verify"
)

// migrationOptions are the flags of `tandem proxy` that make it take part in migrations.
type migrationOptions struct {
	specs           []string       // spec files; none: a plain pass-through proxy
	catalogURI      string         // default: the upstream
	catalogDB       string         // default tandem_meta
	kafkaBrokers    string         // comma-separated host:port list
	journalTopic    string         // default tandem.journal
	journalEmbedded bool           // an in-process Kafka (kfake): demos and tests only
	partitions      int            // partitions of the journal topic when tandem creates it
	journalWorker   bool           // converge journal entries in this process
	flagsPoll       time.Duration  // catalog poll interval of the flag provider
	flagsProvider   string         // catalog (default) or flagd
	flagdFile       string         // flagd flags file, with --flags-provider flagd
	tenant          string         // the evaluation context's tenant
	tokenFile       string         // admin token file; default $TANDEM_ADMIN_TOKEN
	openReads       bool           // --admin-open-reads: GETs need no token
	overrides       storeOverrides // optional --target-uri: every spec's new store (the proxy reads old through --upstream)
	connectTimeout  time.Duration  // default 5s: reaching the catalog, a target store or the brokers at start-up
	shadowWorkers   int
	shadowQueue     int
	convergeTimeout time.Duration
	readSettle      time.Duration
	preReadLimit    int
	gates           flags.GateConfig
	verifyLive      bool // run continuous verification as each runner's verify path
	verifyRepair    bool // with verifyLive: converge confirmed mismatches
	autoRollback    bool
	watchdog        flags.WatchdogConfig

	// Set by `tandem run` and the demo: run each migration's backfill as a path of its runner
	// (nil: no backfill in this process).
	backfill *backfillOptions
	// Set by `tandem run` (--cdc) and the demo: run each migration's change-capture paths
	// (auto, on or off; "": off).
	cdc string
	// Set by `tandem run` (--cdc-apply): who converges the forward stream's changes, the
	// tailer itself (tailer; "" too) or the journal workers (journal).
	cdcApply string

	// Set by the demo, not by flags.
	specData map[string][]byte // spec file name → content, instead of reading specs
	rewrite  func(*transform.Spec)
}

func (o *migrationOptions) addFlags(cmd *cobra.Command, demo bool) {
	f := cmd.Flags()
	if !demo {
		f.StringArrayVar(&o.specs, "spec", nil, "migration spec file (repeatable): the proxy converges writes on its source collection to its target")
		f.StringVar(&o.catalogURI, "catalog", "", "connection string of the catalog's MongoDB (default: --upstream)")
		f.StringVar(&o.kafkaBrokers, "kafka-brokers", "", "Kafka seed brokers for the journal, host:port,... (required with --spec unless --journal-embedded)")
		f.BoolVar(&o.journalEmbedded, "journal-embedded", false, "run an in-process Kafka for the journal (not durable: demos and tests only)")
	}
	f.StringVar(&o.overrides.targetURI, "target-uri", "", "connection string of the new store, instead of the one each spec names (a DynamoDB target: its endpoint URL)")
	f.DurationVar(&o.connectTimeout, "connect-timeout", defaultConnectTimeout, "how long reaching the catalog, each target store and the Kafka brokers may take at start-up")
	f.StringVar(&o.catalogDB, "catalog-db", catalog.DefaultDatabase, "database of the catalog")
	f.StringVar(&o.journalTopic, "journal-topic", adapters.DefaultJournalTopic, "Kafka topic of the journal of changed keys")
	f.IntVar(&o.partitions, "journal-partitions", 12, "partitions of the journal topic, when tandem creates it")
	f.BoolVar(&o.journalWorker, "journal-worker", true, "converge journal entries in this process (turn off to run converge workers elsewhere)")
	f.DurationVar(&o.flagsPoll, "flags-poll", 100*time.Millisecond, "how often the flag provider reads the catalog (flag changes take effect within this)")
	f.StringVar(&o.flagsProvider, "flags-provider", "catalog", "where the proxy reads flags: catalog (the catalog's flags, changed through the admin API) or flagd (a flagd flags file, see --flagd-file)")
	f.StringVar(&o.flagdFile, "flagd-file", "", "flagd flags file (JSON) for --flags-provider flagd; keys MIGRATION.FLAG")
	f.StringVar(&o.tenant, "tenant", "", "tenant passed to flag evaluation (for providers with targeting)")
	f.StringVar(&o.tokenFile, "admin-token-file", "", "file holding the admin API token (default: $TANDEM_ADMIN_TOKEN); without a token the API refuses every change, and every read unless --admin-open-reads")
	f.BoolVar(&o.openReads, "admin-open-reads", false, "let anyone who reaches the admin listener read the migrations' state (the dashboard's views and every GET /v1/ endpoint) without the token; changes still need it")
	f.IntVar(&o.shadowWorkers, "shadow-workers", 16, "converge workers per migration for shadow writes")
	f.IntVar(&o.shadowQueue, "shadow-queue", 1024, "queued keys per shadow worker; keys beyond it go to the journal")
	f.DurationVar(&o.convergeTimeout, "converge-timeout", 5*time.Second, "bound on one converge, pre-read or read from the new store")
	f.DurationVar(&o.readSettle, "shadow-read-settle", 2*time.Second, "how long a shadow-read difference may take to converge before it counts as a mismatch")
	f.IntVar(&o.preReadLimit, "pre-read-limit", 10000, "most keys an unkeyed write converges in dual and cutover (more: left to the journal)")
	f.DurationVar(&o.gates.VerifyMaxAge, "gate-verify-max-age", flags.DefaultVerifyMaxAge, "cutover gate: the newest clean verification may be this old")
	f.DurationVar(&o.gates.MaxLag, "gate-max-lag", flags.DefaultMaxLag, "cutover gate: the largest change lag")
	f.Int64Var(&o.gates.VerifyMaxBacklog, "gate-verify-max-backlog", flags.DefaultMaxBacklog, "cutover gate: the most keys waiting for a verification recheck, for a spec without verify.max_backlog")
	f.BoolVar(&o.verifyLive, "verify-continuous", false, "verify continuously in the shadow, dual and cutover phases: a full pass, then rechecks of changed keys and a rolling sample (the spec's verify section)")
	f.BoolVar(&o.verifyRepair, "verify-repair", false, "with --verify-continuous: converge every confirmed mismatch")
	f.DurationVar(&o.gates.LagFreshness, "gate-lag-freshness", flags.DefaultLagFreshness, "cutover gate: lag records older than this do not count")
	f.BoolVar(&o.autoRollback, "auto-rollback", true, "roll back automatically when the shadow-read mismatch rate or the new store's error rate crosses its threshold (dual and cutover)")
	f.Float64Var(&o.watchdog.MismatchRate, "auto-rollback-mismatch-rate", flags.DefaultMismatchRate, "shadow-read mismatch rate that triggers a rollback (0.05 = 5%)")
	f.Float64Var(&o.watchdog.ErrorRate, "auto-rollback-error-rate", flags.DefaultErrorRate, "new-store error rate that triggers a rollback")
	f.DurationVar(&o.watchdog.Window, "auto-rollback-window", flags.DefaultWatchdogWindow, "window the rates are measured over")
	f.Int64Var(&o.watchdog.MinSamples, "auto-rollback-min-samples", flags.DefaultMinSamples, "samples the window must hold before a rate counts")
}

func (o *migrationOptions) enabled() bool { return len(o.specs) > 0 || len(o.specData) > 0 }

func (o *migrationOptions) validate() error {
	if !o.enabled() {
		return nil
	}
	switch {
	case o.kafkaBrokers == "" && !o.journalEmbedded:
		return usagef("--spec needs a journal: --kafka-brokers HOST:PORT,... (or --journal-embedded for a demo)")
	case o.kafkaBrokers != "" && o.journalEmbedded:
		return usagef("--kafka-brokers and --journal-embedded exclude each other")
	case o.connectTimeout <= 0:
		return usagef("--connect-timeout %s: must be more than 0", o.connectTimeout)
	case o.catalogDB == "":
		return usagef("--catalog-db must name a database")
	case o.journalTopic == "":
		return usagef("--journal-topic must name a topic")
	case o.partitions < 1:
		return usagef("--journal-partitions %d: must be 1 or more", o.partitions)
	case o.flagsProvider != "catalog" && o.flagsProvider != "flagd":
		return usagef("--flags-provider %q: want catalog or flagd", o.flagsProvider)
	case o.flagsProvider == "flagd" && o.flagdFile == "":
		return usagef("--flags-provider flagd needs --flagd-file")
	case o.flagsProvider != "flagd" && o.flagdFile != "":
		return usagef("--flagd-file is only read with --flags-provider flagd")
	case o.flagsPoll < 10*time.Millisecond || o.flagsPoll > time.Minute:
		return usagef("--flags-poll %s: want 10ms to 1m", o.flagsPoll)
	case o.shadowWorkers < 1:
		return usagef("--shadow-workers %d: must be 1 or more", o.shadowWorkers)
	case o.shadowQueue < 1:
		return usagef("--shadow-queue %d: must be 1 or more", o.shadowQueue)
	case o.convergeTimeout <= 0:
		return usagef("--converge-timeout %s: must be more than 0", o.convergeTimeout)
	case o.readSettle < 0:
		return usagef("--shadow-read-settle %s: must be 0 or more", o.readSettle)
	case o.preReadLimit < 0:
		return usagef("--pre-read-limit %d: must be 0 or more", o.preReadLimit)
	case o.gates.VerifyMaxAge <= 0 || o.gates.MaxLag <= 0 || o.gates.LagFreshness <= 0:
		return usagef("--gate-verify-max-age, --gate-max-lag and --gate-lag-freshness must be more than 0")
	case o.gates.VerifyMaxBacklog < 1:
		return usagef("--gate-verify-max-backlog %d: must be 1 or more", o.gates.VerifyMaxBacklog)
	case o.verifyRepair && !o.verifyLive:
		return usagef("--verify-repair repairs what --verify-continuous finds: pass both")
	case o.watchdog.MismatchRate > 1 || o.watchdog.ErrorRate > 1:
		return usagef("--auto-rollback-mismatch-rate and --auto-rollback-error-rate are shares: at most 1 (negative turns a check off)")
	case o.watchdog.Window <= 0:
		return usagef("--auto-rollback-window %s: must be more than 0", o.watchdog.Window)
	case o.watchdog.MinSamples < 1:
		return usagef("--auto-rollback-min-samples %d: must be 1 or more", o.watchdog.MinSamples)
	}
	if o.kafkaBrokers != "" && len(o.brokers()) == 0 {
		return usagef("--kafka-brokers %q names no broker", o.kafkaBrokers)
	}
	for _, b := range o.brokers() {
		if err := checkHostPort("--kafka-brokers", b); err != nil {
			return err
		}
	}
	return nil
}

// brokers is the --kafka-brokers list, trimmed; none when it is empty.
func (o *migrationOptions) brokers() []string {
	var out []string
	for _, b := range strings.Split(o.kafkaBrokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// adminToken returns the admin API token: the file's content, trimmed, or $TANDEM_ADMIN_TOKEN.
func (o *migrationOptions) adminToken() (string, error) {
	if o.tokenFile == "" {
		return strings.TrimSpace(os.Getenv("TANDEM_ADMIN_TOKEN")), nil
	}
	b, err := os.ReadFile(o.tokenFile)
	if err != nil {
		return "", usagef("--admin-token-file: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", usagef("--admin-token-file %s is empty", o.tokenFile)
	}
	return tok, nil
}

// migrationStack is what a proxy runs for its migrations: the catalog, flags, journal, the
// process-wide journal worker, and a migration.Runner per migration.
type migrationStack struct {
	log        *slog.Logger
	routes     *proxy.Routes
	api        *admin.Handler
	manager    *flags.Manager
	catalog    *catalog.Catalog
	runners    []*migration.Runner
	byName     map[string]*migration.Runner
	worker     *migration.Supervisor         // the journal worker; nil with --journal-worker=false
	closers    []func(context.Context) error // run in reverse order, after the runners stop
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	cluster    *kfake.Cluster
	evaluator  *flags.Evaluator
	bfMetrics  *backfill.Metrics  // created by the first backfill path
	cdcMetrics *cdc.TailerMetrics // created by the first change-capture path
	vMetrics   *verify.Metrics    // the verifier's, one per process
}

// startMigrations builds and starts everything the proxy needs for the migrations in o: the
// catalog, the journal and the flags, shared by every migration, then a migration.Runner per
// spec, the journal worker, and the admin API. The old store of every migration is read
// through upstreamURI, the deployment the proxy forwards to.
func startMigrations(ctx context.Context, o *migrationOptions, upstreamURI string, reg prometheus.Registerer, log *slog.Logger) (_ *migrationStack, err error) {
	token, err := o.adminToken()
	if err != nil {
		return nil, err
	}
	specs, err := o.loadSpecs()
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	ms := &migrationStack{log: log, byName: map[string]*migration.Runner{}, cancel: cancel}
	defer func() {
		if err != nil {
			_ = ms.close(context.Background())
		}
	}()
	oldClient, err := ms.openCatalog(ctx, o, upstreamURI)
	if err != nil {
		return nil, err
	}
	journal, err := ms.openJournal(ctx, o, reg, log)
	if err != nil {
		return nil, err
	}
	if err := ms.openFlags(ctx, o, reg, log); err != nil {
		return nil, err
	}
	if err := ms.addRunners(ctx, o, specs, oldClient, journal, reg, log); err != nil {
		return nil, err
	}
	if err := ms.start(runCtx, o, journal, reg, log); err != nil {
		return nil, err
	}
	if reg != nil {
		// tandem_dead_letters: the catalog's count, read on scrape (every process's dead letters).
		names := make([]string, 0, len(ms.runners))
		for _, r := range ms.runners {
			names = append(names, r.Name())
		}
		if err := reg.Register(migration.NewDeadLetterCollector(ms.catalog, names, 0, 0, log)); err != nil {
			return nil, fmt.Errorf("registering the dead-letter metrics: %w", err)
		}
	}
	ms.api = admin.NewHandler(admin.Config{Flags: ms.manager, Token: token, OpenReads: o.openReads, Logger: log, Verify: ms.verify, Status: ms.status, RetryDeadLetters: ms.retryDeadLetters, BackfillCatalog: ms.catalog, Reports: ms.reportService()})
	return ms, nil
}

// openCatalog connects the old store's client, through the upstream (lazily: the proxy starts
// while the upstream is down), and opens the catalog, on --catalog or the upstream, which must
// answer now.
func (ms *migrationStack) openCatalog(ctx context.Context, o *migrationOptions, upstreamURI string) (*mongo.Client, error) {
	oldClient, err := mongo.Connect(options.Client().ApplyURI(upstreamURI))
	if err != nil {
		return nil, usagef("--upstream %s: %s", redactURI(upstreamURI), scrub(err.Error(), upstreamURI))
	}
	ms.onClose(func(ctx context.Context) error { return oldClient.Disconnect(ctx) })
	catalogURI, catalogWhat := upstreamURI, "the catalog (--catalog, default --upstream)"
	if o.catalogURI != "" {
		catalogURI, catalogWhat = o.catalogURI, "the catalog (--catalog)"
	}
	catClient, err := connectMongo(ctx, catalogWhat, catalogURI, o.connectTimeout)
	if err != nil {
		return nil, err
	}
	ms.onClose(func(ctx context.Context) error { return catClient.Disconnect(ctx) })
	openCtx, openCancel := context.WithTimeout(ctx, 30*time.Second)
	defer openCancel()
	if ms.catalog, err = catalog.Open(openCtx, catClient, catalog.WithDatabase(o.catalogDB)); err != nil {
		return nil, fmt.Errorf("opening the catalog (database %s on %s): %w", o.catalogDB, redactURI(catalogURI), err)
	}
	return oldClient, nil
}

// openJournal opens the journal (an in-process Kafka with --journal-embedded) and makes sure
// its topic exists.
func (ms *migrationStack) openJournal(ctx context.Context, o *migrationOptions, reg prometheus.Registerer, log *slog.Logger) (*adapters.KafkaJournal, error) {
	var err error
	brokers := o.brokers()
	if o.journalEmbedded {
		if ms.cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(o.partitions), o.journalTopic)); err != nil {
			return nil, fmt.Errorf("starting the embedded journal: %w", err)
		}
		cluster := ms.cluster
		ms.onClose(func(context.Context) error { cluster.Close(); return nil })
		brokers = cluster.ListenAddrs()
	}
	journal, err := adapters.NewKafkaJournal(adapters.KafkaJournalConfig{
		Brokers: brokers, Topic: o.journalTopic, Logger: log, Metrics: adapters.NewJournalMetrics(reg),
	})
	if err != nil {
		return nil, usagef("--kafka-brokers %s: %v", strings.Join(brokers, ","), err)
	}
	ms.onClose(func(context.Context) error { journal.Close(); return nil })
	topicCtx, topicCancel := context.WithTimeout(ctx, o.connectTimeout)
	err = journal.EnsureTopic(topicCtx, int32(o.partitions), -1)
	topicCancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("the journal (--kafka-brokers %s): no broker answered within %s", strings.Join(brokers, ","), o.connectTimeout)
		}
		return nil, fmt.Errorf("the journal (--kafka-brokers %s): %s", strings.Join(brokers, ","), oneLine(err.Error()))
	}
	return journal, nil
}

// openFlags builds the flags manager (changes, gates) and the provider and evaluator every
// request and every runner is steered by.
func (ms *migrationStack) openFlags(ctx context.Context, o *migrationOptions, reg prometheus.Registerer, log *slog.Logger) error {
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
	ms.manager = flags.NewManager(ms.catalog, flags.WithGates(o.gates), flags.WithReverseCheck(ms.reverseCheck))
	var provider openfeature.FeatureProvider
	if o.flagsProvider == "flagd" {
		// Flags come from the file; the catalog still holds specs, audit and gates, but the
		// admin API's flag changes do not reach this proxy.
		if provider, err = flags.NewFlagdProvider(o.flagdFile); err != nil {
			return usageError{err}
		}
		log.Warn("flags come from a flagd file: flag changes made through the admin API do not steer this proxy", "file", o.flagdFile)
	} else {
		p, err := flags.NewProvider(ms.catalog, flags.WithPollInterval(o.flagsPoll), flags.WithLogger(log), flags.WithMetrics(reg))
		if err != nil {
			return err
		}
		provider = p
	}
	domain := "tandem-proxy-" + processName() + "-" + bson.NewObjectID().Hex()
	ofClient, err := flags.Register(openCtx, domain, provider)
	if err != nil {
		return err
	}
	ms.onClose(func(context.Context) error {
		// Only this proxy's provider: openfeature.Shutdown would stop every domain's.
		if sh, ok := provider.(openfeature.StateHandler); ok {
			sh.Shutdown()
		}
		return nil
	})
	ms.evaluator = flags.NewEvaluator(ofClient)
	ms.onClose(func(context.Context) error { ms.evaluator.Close(); return nil })
	return nil
}

// addRunners registers each spec in the catalog, opens its new store and builds its runner,
// then the proxy's routes through them.
func (ms *migrationStack) addRunners(ctx context.Context, o *migrationOptions, specs []*transform.Spec, oldClient *mongo.Client,
	journal shadow.Journal, reg prometheus.Registerer, log *slog.Logger) error {
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	who := fmt.Sprintf("tandem proxy %s", processName())
	shadowMetrics := shadow.NewMetrics(reg)
	ms.vMetrics = verify.NewMetrics(reg)
	var routes []*proxy.Migration
	for _, spec := range specs {
		if spec.Source.Kind != transform.StoreMongoDB || spec.Key.Source != "_id" {
			return usagef("spec %s: the proxy takes part only in migrations from a MongoDB collection keyed by _id", spec.File)
		}
		if _, dup := ms.byName[spec.Name]; dup {
			return usagef("spec %s: migration %s is named twice", spec.File, spec.Name)
		}
		if _, err := ms.catalog.RegisterSpec(openCtx, spec.Name, spec.Version, spec.Redacted(), who); err != nil {
			return fmt.Errorf("registering %s in the catalog: %w", spec.Name, err)
		}
		newStore, err := openTarget(ctx, spec, o.connectTimeout)
		if err != nil {
			return err
		}
		ms.onClose(func(ctx context.Context) error { return newStore.Close(ctx) })
		r, err := migration.New(o.runnerConfig(spec, oldClient, newStore, ms, journal, shadowMetrics, log))
		if err != nil {
			if errors.Is(err, migration.ErrInvalidConfig) {
				return usageError{err}
			}
			return err
		}
		// Change capture first: its start positions are taken before the backfill can copy.
		if err := ms.addCDC(openCtx, o, r, journal, reg, log); err != nil {
			return err
		}
		if o.backfill != nil {
			if err := ms.addBackfill(openCtx, o, r, reg, log); err != nil {
				return err
			}
		}
		if o.verifyLive {
			if err := r.AddVerifyPath(o.verifyRepair); err != nil {
				return err
			}
		}
		// What an older spec version dead-lettered is converged again under this one.
		if err := r.AddDeadLetterRetryPath(); err != nil {
			return err
		}
		ms.runners = append(ms.runners, r)
		ms.byName[spec.Name] = r
		routes = append(routes, r.Route())
	}
	var err error
	ms.routes, err = proxy.NewRoutes(ms.evaluator, o.tenant, routes...)
	return err
}

// start runs the journal worker (unless --journal-worker=false) and every runner.
func (ms *migrationStack) start(runCtx context.Context, o *migrationOptions, journal *adapters.KafkaJournal, reg prometheus.Registerer, log *slog.Logger) error {
	if o.journalWorker {
		path, err := migration.NewJournalWorker(migration.JournalConfig{
			Journal: journal, LagReporter: ms.catalog, Metrics: cdc.NewWorkerMetrics(reg), Logger: log,
		}, ms.runners...)
		if err != nil {
			return err
		}
		ms.worker = migration.NewSupervisor(path, migration.Backoff{}, log)
		for _, r := range ms.runners {
			r.Share(ms.worker)
		}
		ms.worker.Start(runCtx)
	}
	for _, r := range ms.runners {
		ms.wg.Add(1)
		go func() {
			defer ms.wg.Done()
			if err := r.Run(runCtx); err != nil && !errors.Is(err, migration.ErrClosed) {
				log.Error("migration runner stopped", "migration", r.Name(), "err", err)
			}
		}()
	}
	return nil
}

// runnerConfig is the migration.Config of spec under these options.
func (o *migrationOptions) runnerConfig(spec *transform.Spec, oldClient *mongo.Client, newStore adapters.Store,
	ms *migrationStack, journal shadow.Journal, metrics *shadow.Metrics, log *slog.Logger) migration.Config {
	cfg := migration.Config{
		Spec: spec, Old: oldClient.Database(spec.Source.Database).Collection(spec.Source.Collection), New: newStore,
		Catalog: ms.catalog, Journal: journal, Flags: ms.evaluator, Tenant: o.tenant, Manager: ms.manager,
		Metrics: metrics, Logger: log,
		Workers: o.shadowWorkers, QueueDepth: o.shadowQueue, ConvergeTimeout: o.convergeTimeout,
		ReadSettle: o.readSettle, PreReadLimit: o.preReadLimit, VerifyMetrics: ms.vMetrics,
	}
	if o.autoRollback {
		wcfg := o.watchdog
		cfg.Watchdog = &wcfg
	}
	return cfg
}

// loadSpecs reads and parses the spec files (or the demo's embedded specs), expanding their
// ${VAR} references, and applies the demo's rewrite and the --target-uri override.
func (o *migrationOptions) loadSpecs() ([]*transform.Spec, error) {
	var specs []*transform.Spec
	add := func(name string, data []byte) error {
		spec, err := transform.Parse(name, data)
		if err != nil {
			return usagef("--spec %s: %v", name, err)
		}
		if o.rewrite != nil {
			o.rewrite(spec)
		}
		if err := o.overrides.apply(spec); err != nil {
			return err
		}
		specs = append(specs, spec)
		return nil
	}
	for _, path := range o.specs {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, usagef("--spec %s: %v", path, errors.Unwrap(err))
		}
		if err := add(path, data); err != nil {
			return nil, err
		}
	}
	for name, data := range o.specData {
		if err := add(name, data); err != nil {
			return nil, err
		}
	}
	return specs, nil
}

// reverseCheck is the cutover gate's check of the reverse path: the migration must be one this
// proxy runs, with a reverse transform.
func (ms *migrationStack) reverseCheck(_ context.Context, name string) error {
	r, ok := ms.byName[name]
	if !ok {
		return fmt.Errorf("migration %s is not run by this proxy", name)
	}
	if len(r.Spec().ReverseSteps()) == 0 {
		return fmt.Errorf("migration %s has no reverse steps: a rollback after cutover could not bring new writes back", name)
	}
	return nil
}

// runner returns the runner of a migration, or an error wrapping catalog.ErrNotFound.
func (ms *migrationStack) runner(name string) (*migration.Runner, error) {
	r, ok := ms.byName[name]
	if !ok {
		return nil, fmt.Errorf("migration %s is not run by this proxy: %w", name, catalog.ErrNotFound)
	}
	return r, nil
}

// verify runs a full verification of one of the stack's migrations.
func (ms *migrationStack) verify(ctx context.Context, name string, repair bool) (catalog.VerifySummary, error) {
	r, err := ms.runner(name)
	if err != nil {
		return catalog.VerifySummary{}, err
	}
	return r.Verify(ctx, repair)
}

// retryDeadLetters converges one of the stack's migrations' dead letters again, in the phase
// the catalog has now (reverse ones only from cutover on).
func (ms *migrationStack) retryDeadLetters(ctx context.Context, name string, all bool) (migration.DeadLetterRetry, error) {
	r, err := ms.runner(name)
	if err != nil {
		return migration.DeadLetterRetry{}, err
	}
	v, err := ms.manager.Get(ctx, name)
	if err != nil {
		return migration.DeadLetterRetry{}, err
	}
	return r.RetryDeadLetters(ctx, all, v.Phase)
}

// status reports one of the stack's migrations as its runner sees it.
func (ms *migrationStack) status(_ context.Context, name string) (migration.Status, error) {
	r, err := ms.runner(name)
	if err != nil {
		return migration.Status{}, err
	}
	return r.Status(), nil
}

func (ms *migrationStack) onClose(f func(context.Context) error) { ms.closers = append(ms.closers, f) }

// close closes the runners (each drains its shadow writer and comparer, so what they hold is
// converged or journaled, and stops its paths), stops the journal worker, then closes the
// rest, newest first. The proxy must have drained already.
func (ms *migrationStack) close(ctx context.Context) error {
	var errs []error
	for _, r := range ms.runners {
		if err := r.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if ms.worker != nil {
		ms.worker.Stop()
	}
	if ms.cancel != nil {
		ms.cancel()
	}
	ms.wg.Wait()
	for i := len(ms.closers) - 1; i >= 0; i-- {
		if err := ms.closers[i](ctx); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func processName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}
