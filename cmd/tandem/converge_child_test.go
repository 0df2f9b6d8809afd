package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/shadow"
)

// The convergence test's child processes (TANDEM_CONVERGE_CHILD=backfill or tailer): the
// backfill and the forward tailer of one seed's migration, built from the parts `tandem run`
// builds them from (openBackfill, the converge engine, cdc.ChangeStream, cdc.Tailer with the
// backfill interplay and the catalog's leases), but with leases of convergeLease, so that the
// work of a killed process is taken over within a second instead of after 15–30 s.

// convergeLease is the children's partition and tailer lease.
const convergeLease = time.Second

// convergeRetry is how long a child waits before it runs a path again after an error, as the
// runtime's supervisor does (much sooner here).
const convergeRetry = 100 * time.Millisecond

// convergeChildMain runs the child process of role and returns its exit status: 0 once the
// backfill is done, or once the tailer, told to stop by the end of its stdin, has drained the
// stream.
func convergeChildMain(role string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("child", role)
	ctx := context.Background()
	rate, err := strconv.ParseFloat(os.Getenv("TANDEM_CONVERGE_RATE"), 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: TANDEM_CONVERGE_RATE:", err)
		return 2
	}
	run, err := openConvergeRun(ctx, os.Getenv("TANDEM_CONVERGE_SPEC"), os.Getenv("TANDEM_CONVERGE_CATALOG_DB"), rate, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		return 2
	}
	defer run.close()
	switch role {
	case "backfill":
		return backfillChild(ctx, run)
	case "tailer":
		return tailerChild(ctx, run, log)
	}
	fmt.Fprintf(os.Stderr, "child: TANDEM_CONVERGE_CHILD=%q: want backfill or tailer\n", role)
	return 2
}

// openConvergeRun opens the seed's stores and catalog as `tandem backfill run` does, with the
// children's backfill settings: small batches, a rate limit (documents/s for all processes
// together) that keeps the copy running while the writers write, and short leases.
func openConvergeRun(ctx context.Context, specPath, catalogDB string, rate float64, log *slog.Logger) (*backfillRun, error) {
	spec, err := loadSpecFile(specPath, storeOverrides{})
	if err != nil {
		return nil, err
	}
	cfg := backfill.Config{
		Workers: 2, Partitions: 4, Batch: 4, Rate: rate, Lease: convergeLease, Poll: 100 * time.Millisecond,
		AllowExisting: true, // the proxy's converges write to new from the start, as under tandem run
	}
	return openBackfill(ctx, spec, cfg, "", catalogDB, 10*time.Second, false, log)
}

// backfillChild runs the backfill until every partition is done.
func backfillChild(ctx context.Context, run *backfillRun) int {
	for {
		b, err := backfill.New(run.cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: backfill:", err)
			return 2
		}
		if err = b.Run(ctx); err == nil {
			return 0
		}
		fmt.Fprintln(os.Stderr, "child: backfill run:", err)
		time.Sleep(convergeRetry)
	}
}

// tailerChild follows old's change stream until its stdin ends, then releases the lease and
// drains the stream (a tailer with UntilCaughtUp): it exits 0 once everything written before
// the end of its stdin is converged.
func tailerChild(ctx context.Context, run *backfillRun, log *slog.Logger) int {
	engine, err := convergeEngine(run.spec, run.cfg.Old, run.cfg.New, run.cfg.Catalog, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: engine:", err)
		return 2
	}
	follow, err := convergeTailer(run, engine, false, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: tailer:", err)
		return 2
	}
	followCtx, stop := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	for followCtx.Err() == nil {
		if err := follow.Run(followCtx); err != nil {
			fmt.Fprintln(os.Stderr, "child: tailer run:", err)
			time.Sleep(convergeRetry)
		}
	}
	drain, err := convergeTailer(run, engine, true, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: drain:", err)
		return 2
	}
	for {
		err := drain.Run(ctx)
		if err == nil {
			return 0
		}
		fmt.Fprintln(os.Stderr, "child: drain run:", err)
		time.Sleep(convergeRetry)
	}
}

// convergeTailer is the forward tailer of run's migration as tandem run configures it (the
// backfill interplay, the catalog's leases and checkpoints), with the children's lease and a
// fast poll; drain makes it stop once caught up.
func convergeTailer(run *backfillRun, engine *shadow.Engine, drain bool, log *slog.Logger) (*cdc.Tailer, error) {
	old, ok := run.cfg.Old.(*adapters.MongoStore)
	if !ok {
		return nil, fmt.Errorf("the convergence test needs a MongoDB source, not %T", run.cfg.Old)
	}
	src, err := cdc.NewChangeStream(cdc.ChangeStreamConfig{Collection: old.Collection(), Poll: 20 * time.Millisecond, Logger: log})
	if err != nil {
		return nil, err
	}
	cat := run.cfg.Catalog
	return cdc.NewTailer(cdc.TailerConfig{
		Migration: run.spec.Name, Direction: shadow.Forward, Source: src, Engine: engine, Checkpoints: cat,
		Leases: cat, Lease: convergeLease, LagReporter: cat, Interplay: cdc.NewBackfillInterplay(cat, run.spec.Name),
		MaxConverge: 10, UntilCaughtUp: drain, Logger: log,
	})
}
