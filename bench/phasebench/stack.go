package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/examples"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/migration"
	"github.com/tandemdb/tandem/proxy"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/transform"
)

const (
	migrationName = "users-v2" // the name examples.UsersV2 gives its migration
	oldColl       = "users"
	newColl       = "users_v2"
	journalTopic  = "tandem.journal"
	partitions    = 4
)

// stackConfig describes one proxy with the users-v2 migration, built through the same
// constructor as `tandem proxy --spec examples/users-v2.yaml` (migration.New, see
// cmd/tandem/migrations.go startMigrations), without the automatic-rollback watchdog and the
// admin API.
type stackConfig struct {
	ferretURI string        // the upstream, the old and new stores and the catalog. Required.
	database  string        // database of the old (users) and new (users_v2) collections. Required.
	catalogDB string        // database of the catalog. Required.
	domain    string        // OpenFeature domain of this stack's flag provider. Required.
	poll      time.Duration // the provider's catalog poll interval; cmd/tandem's default is 100ms.
	brokers   []string      // the journal's Kafka (a kfake cluster). Required.
	log       *slog.Logger  // Required.
}

// stack is one proxy and everything behind it. Its metrics go to its own registry, which the
// benchmark reads to check what the proxy did in each round.
type stack struct {
	addr      string // the proxy's listen address
	reg       *prometheus.Registry
	cat       *catalog.Catalog
	manager   *flags.Manager
	evaluator *flags.Evaluator
	spec      *transform.Spec
	runner    *migration.Runner
	engine    *shadow.Engine
	writer    *countingWriter
	old, new  *mongo.Collection

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	worker  *migration.Supervisor
	closers []func(context.Context) error
}

// countingWriter counts the keys the proxy hands to Async, so that the benchmark can wait for
// the asynchronous converges of a shadow round to finish before it measures the next round.
type countingWriter struct {
	proxy.ShadowWriter
	async atomic.Int64
}

func (w *countingWriter) Async(keys []adapters.Key, op string) {
	w.async.Add(int64(len(keys)))
	w.ShadowWriter.Async(keys, op)
}

// usersSpec parses examples/users-v2.yaml and points it at cfg's namespaces.
func usersSpec(cfg stackConfig) (*transform.Spec, error) {
	spec, err := transform.Parse("users-v2.yaml", examples.UsersV2)
	if err != nil {
		return nil, err
	}
	spec.Source.URI, spec.Source.Database, spec.Source.Collection = cfg.ferretURI, cfg.database, oldColl
	spec.Target.URI, spec.Target.Database, spec.Target.Collection = cfg.ferretURI, cfg.database, newColl
	return spec, nil
}

// startStack builds and starts one proxy with the users-v2 migration.
func startStack(ctx context.Context, cfg stackConfig) (s *stack, err error) {
	runCtx, cancel := context.WithCancel(context.Background())
	s = &stack{reg: prometheus.NewRegistry(), cancel: cancel}
	defer func() {
		if err != nil {
			s.close(context.Background())
		}
	}()
	log := cfg.log
	if s.spec, err = usersSpec(cfg); err != nil {
		return nil, err
	}

	// The old store and the catalog through one client, the new store through another (as
	// cmd/tandem opens the target from the spec's own URI).
	oldClient, err := mongo.Connect(options.Client().ApplyURI(cfg.ferretURI))
	if err != nil {
		return nil, err
	}
	s.onClose(oldClient.Disconnect)
	newClient, err := mongo.Connect(options.Client().ApplyURI(cfg.ferretURI))
	if err != nil {
		return nil, err
	}
	s.onClose(newClient.Disconnect)
	if s.cat, err = catalog.Open(ctx, oldClient, catalog.WithDatabase(cfg.catalogDB)); err != nil {
		return nil, fmt.Errorf("opening the catalog: %w", err)
	}

	journal, err := adapters.NewKafkaJournal(adapters.KafkaJournalConfig{
		Brokers: cfg.brokers, Topic: journalTopic, Logger: log, Metrics: adapters.NewJournalMetrics(s.reg),
	})
	if err != nil {
		return nil, err
	}
	s.onClose(func(context.Context) error { journal.Close(); return nil })
	if err := journal.EnsureTopic(ctx, partitions, -1); err != nil {
		return nil, fmt.Errorf("journal topic: %w", err)
	}

	// Flags: the manager, and the provider and evaluator that steer this proxy.
	spec := s.spec
	s.manager = flags.NewManager(s.cat, flags.WithReverseCheck(func(context.Context, string) error {
		if len(spec.ReverseSteps()) == 0 {
			return errors.New("no reverse steps")
		}
		return nil
	}))
	provider, err := flags.NewProvider(s.cat, flags.WithPollInterval(cfg.poll), flags.WithLogger(log), flags.WithMetrics(s.reg))
	if err != nil {
		return nil, err
	}
	ofClient, err := flags.Register(ctx, cfg.domain, provider)
	if err != nil {
		return nil, err
	}
	s.onClose(provider.ShutdownWithContext)
	s.evaluator = flags.NewEvaluator(ofClient)
	s.onClose(func(context.Context) error { s.evaluator.Close(); return nil })

	if _, err := s.cat.RegisterSpec(ctx, spec.Name, spec.Version, string(examples.UsersV2), "phasebench"); err != nil {
		return nil, fmt.Errorf("registering %s: %w", spec.Name, err)
	}
	s.old = oldClient.Database(cfg.database).Collection(oldColl)
	s.new = newClient.Database(cfg.database).Collection(newColl)
	// cmd/tandem's defaults: 16 workers, 1024 keys per queue, 5s per converge, 2s settle.
	s.runner, err = migration.New(migration.Config{
		Spec: spec, Old: s.old, New: adapters.NewMongoStore(s.new),
		Catalog: s.cat, Journal: journal, Flags: s.evaluator, Manager: s.manager,
		Metrics: shadow.NewMetrics(s.reg), Logger: log,
		Workers: 16, QueueDepth: 1024, ConvergeTimeout: 5 * time.Second, ReadSettle: 2 * time.Second, PreReadLimit: 10000,
	})
	if err != nil {
		return nil, err
	}
	s.engine = s.runner.Engine()
	route := *s.runner.Route()
	s.writer = &countingWriter{ShadowWriter: route.Writer}
	route.Writer = s.writer
	routes, err := proxy.NewRoutes(s.evaluator, "", &route)
	if err != nil {
		return nil, err
	}

	path, err := migration.NewJournalWorker(migration.JournalConfig{
		Journal: journal, LagReporter: s.cat, Metrics: cdc.NewWorkerMetrics(s.reg), Logger: log,
	}, s.runner)
	if err != nil {
		return nil, err
	}
	s.worker = migration.NewSupervisor(path, migration.Backoff{}, log)
	s.runner.Share(s.worker)
	s.worker.Start(runCtx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.runner.Run(runCtx); err != nil {
			log.Error("migration runner stopped", "err", err)
		}
	}()

	up, err := proxy.NewUpstream(cfg.ferretURI, proxy.WithUpstreamLogger(log))
	if err != nil {
		return nil, err
	}
	s.onClose(up.Close)
	srv := proxy.NewServer(up, proxy.WithLogger(log), proxy.WithMetrics(proxy.NewMetrics(s.reg)), proxy.WithRoutes(routes))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	s.onClose(func(context.Context) error {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, proxy.ErrServerClosed) {
			return err
		}
		return nil
	})
	return s, nil
}

func (s *stack) onClose(f func(context.Context) error) { s.closers = append(s.closers, f) }

// close stops the proxy first (closers run newest first), then closes the runner (which drains
// the shadow writer and comparer), stops the journal worker and closes the rest.
func (s *stack) close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if len(s.closers) > 0 {
		last := s.closers[len(s.closers)-1]
		if err := last(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "phasebench: closing the proxy: %v\n", err)
		}
		s.closers = s.closers[:len(s.closers)-1]
	}
	if s.runner != nil {
		_ = s.runner.Close(ctx)
	}
	if s.worker != nil {
		s.worker.Stop()
	}
	s.cancel()
	s.wg.Wait()
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i](ctx)
	}
}

// flagsSeen returns the flags this stack's evaluator gives the migration's namespace now.
func (s *stack) flagsSeen(ctx context.Context) flags.Values {
	return s.evaluator.Evaluate(ctx, flags.Context{
		Migration: migrationName, Database: s.spec.Source.Database, Collection: s.spec.Source.Collection,
	})
}

// metricSum adds up the values of every series of a counter, gauge or histogram family
// (a histogram's sample sum) whose labels include match; count is a histogram's sample count.
func (s *stack) metricSum(name string, match map[string]string) (sum, count float64) {
	mfs, err := s.reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			n := 0
			for _, l := range m.GetLabel() {
				if v, ok := match[l.GetName()]; ok && v == l.GetValue() {
					n++
				}
			}
			if n != len(match) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += m.Histogram.GetSampleSum()
				count += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum, count
}

// asyncPending is the number of keys handed to Async whose converge has not finished.
func (s *stack) asyncPending() int64 {
	done, _ := s.metricSum("tandem_shadow_writes_total", map[string]string{"mode": "async"})
	return s.writer.async.Load() - int64(done)
}

// convergeTotal counts forward converges finished, by any path (async, sync, journal worker).
func (s *stack) convergeTotal() float64 {
	n, _ := s.metricSum("tandem_converge_total", map[string]string{"direction": "forward"})
	return n
}

// drain waits until every asynchronous converge has finished and no converge has run for
// quiet (the journal worker's included), at most limit. It returns how long it waited.
func (s *stack) drain(quiet, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	last, lastChange := s.convergeTotal(), time.Now()
	for {
		now := time.Now()
		if n := s.convergeTotal(); n != last {
			last, lastChange = n, now
		}
		if s.asyncPending() <= 0 && now.Sub(lastChange) >= quiet {
			return now.Sub(start), nil
		}
		if now.Sub(start) > limit {
			return now.Sub(start), fmt.Errorf("shadow converges still running after %s (%d async keys pending)", limit, s.asyncPending())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
