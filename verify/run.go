package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/time/rate"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// The modes of a run (catalog.VerifyRun.Mode).
const (
	ModeOnce       = "once"
	ModeContinuous = "continuous"
)

// summaryTimeout bounds the saving of the summary after the run's context has ended.
const summaryTimeout = 30 * time.Second

// noteStripes is the number of locks the notes of keys are spread over.
const noteStripes = 64

// maxSamples is how many lines VerifySummary.Samples keeps.
const maxSamples = 20

// Run verifies that the new store holds the forward transform of every document of the old
// store, and nothing else (see the package doc). It joins the migration's newest unfinished
// run of mode once, or starts one, works on its tasks with other processes until every
// generation is done, and saves the summary, which it returns. It also saves the summary when
// it ends early (ctx cancelled, a store failing more than Retries times): the summary is then
// not clean, Run returns the error, and the run stays unfinished for the next Run to resume.
// Only an invalid Config saves nothing.
func Run(ctx context.Context, cfg Config) (catalog.VerifySummary, error) {
	if err := cfg.check(); err != nil {
		return catalog.VerifySummary{}, err
	}
	v := newVerifier(cfg.withDefaults(), ModeOnce)
	started := time.Now().UTC()
	v.log.Info("verification started")
	run, err := v.joinOrStart(ctx, ModeOnce)
	if err == nil {
		err = v.work(ctx, run)
	}
	sum := v.summary(context.WithoutCancel(ctx), run, started, err)
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), summaryTimeout)
	defer cancel()
	if serr := cfg.Catalog.SaveVerifySummary(saveCtx, cfg.Migration, sum); serr != nil {
		err = errors.Join(err, fmt.Errorf("verify %s: saving the summary: %w", cfg.Migration, serr))
	}
	v.log.Info("verification finished", "run", run.RunID, "clean", sum.Clean, "keys", sum.Keys,
		"mismatches", sum.Mismatches, "errors", sum.Errors, "rechecked", sum.Rechecked, "repaired", sum.Repaired, "err", err)
	return sum, err
}

// verifier is one process's part in a run.
type verifier struct {
	cfg     Config
	mode    string
	log     *slog.Logger
	limiter *rate.Limiter // nil: unlimited
	repairs *rate.Limiter

	holding sync.Map // task id → true, the tasks this process holds
	// held counts holding's tasks; dropped is closed (and replaced) when one is let go, to
	// wake the workers that wait for it.
	planMu    sync.Mutex // held while a worker plans the full pass
	advanceMu sync.Mutex // held while a worker advances the run to its next generation
	held      atomic.Int64
	droppedMu sync.Mutex
	dropped   chan struct{}

	// noteLocks serialize the notes of one key in this process (see note). Two processes
	// can still interleave a key's notes: a continuous process's sample with another's
	// recheck.
	noteLocks [noteStripes]sync.Mutex

	rechecked, repaired, repairFailed, keyErrors atomic.Int64
}

func newVerifier(cfg Config, mode string) *verifier {
	v := &verifier{cfg: cfg, mode: mode, log: cfg.Logger.With("migration", cfg.Migration),
		repairs: rate.NewLimiter(rate.Limit(cfg.RepairRate), 1)}
	if cfg.Rate > 0 {
		v.limiter = rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Batch)
	}
	return v
}

// joinOrStart returns the newest unfinished run (of mode once for Run; of any mode for the
// continuous path), or starts the next one.
func (v *verifier) joinOrStart(ctx context.Context, mode string) (catalog.VerifyRun, error) {
	cat := v.cfg.Catalog
	for attempt := 0; ; attempt++ {
		latest, err := cat.LatestVerifyRun(ctx, v.cfg.Migration)
		var seq int64 = 1
		switch {
		case err == nil && latest.Finished.IsZero() && (mode == ModeContinuous || latest.Mode == mode):
			v.log.Info("joining verification run", "run", latest.RunID, "mode", latest.Mode)
			return latest, nil
		case err == nil:
			seq = latest.Seq + 1
		case !errors.Is(err, catalog.ErrNotFound):
			return latest, fmt.Errorf("verify %s: reading the newest run: %w", v.cfg.Migration, err)
		}
		total, err := v.cfg.Old.EstimateCount(ctx)
		if err != nil {
			return catalog.VerifyRun{}, fmt.Errorf("verify %s: counting the old store: %w", v.cfg.Migration, err)
		}
		run, created, err := cat.StartVerifyRun(ctx, catalog.VerifyRun{
			Migration: v.cfg.Migration, Seq: seq, SpecVersion: v.cfg.SpecVersion, Mode: mode,
			Started: time.Now().UTC(), Total: total, Settle: v.cfg.Settle, CreatedBy: v.cfg.Owner,
			MismatchBudget: v.cfg.MismatchBudget, MaxBacklog: v.cfg.MaxBacklog,
		})
		if err != nil {
			return run, fmt.Errorf("verify %s: starting run %d: %w", v.cfg.Migration, seq, err)
		}
		if created || (run.Finished.IsZero() && (mode == ModeContinuous || run.Mode == mode)) || attempt >= 5 {
			return run, nil
		}
	}
}

// work runs Concurrency workers on the run until it is finished (once) or ctx ends; the
// first error that a worker cannot get past stops the others.
func (v *verifier) work(ctx context.Context, run catalog.VerifyRun) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for i := range v.cfg.Concurrency {
		wg.Go(func() {
			if err := v.worker(ctx, run, i); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, errRunFinished) {
		return err
	}
	return nil
}

// errRunFinished stops the other workers once one saw the run finish.
var errRunFinished = errors.New("verification run finished")

// worker claims and works on tasks of the run's newest generation; when every task is done it
// makes the next generation (or finishes the run). Waiting and claiming are decided from the
// catalog each time, never from memory, so a restarted process picks up where its tasks were.
func (v *verifier) worker(ctx context.Context, run catalog.VerifyRun, id int) error {
	failures := 0
	for ctx.Err() == nil {
		dropped := v.droppedSignal() // before the claim, so that a drop after it is not missed
		gen, err := v.currentGeneration(ctx, run)
		if err != nil {
			if failures++; failures > v.cfg.Retries {
				return err
			}
			v.log.Warn("reading the verification generation", "err", err)
			sleep(ctx, v.backoff(failures))
			continue
		}
		h, state, err := v.claim(ctx, run, gen, id)
		switch {
		case err != nil:
			if failures++; failures > v.cfg.Retries {
				return err
			}
			v.log.Warn("claiming a verification task", "err", err)
			sleep(ctx, v.backoff(failures))
		case h != nil:
			if err := v.process(ctx, run, h); err != nil && !errors.Is(err, errLeaseLost) {
				if ctx.Err() != nil {
					// Let the task go at once, so that the next process need not wait for the
					// lease to expire; its checkpoint stays.
					rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
					v.release(rctx, h, "interrupted: "+context.Cause(ctx).Error())
					cancel()
					return ctx.Err()
				}
				v.noteError(ctx, run, h, err)
				if failures++; failures > v.cfg.Retries {
					return fmt.Errorf("verify %s: task %s: %w", v.cfg.Migration, h.task.ID, err)
				}
				sleep(ctx, v.backoff(failures))
				continue
			}
			failures = 0
		case state == genDone:
			finished, err := v.advance(ctx, run, gen)
			if err != nil {
				if failures++; failures > v.cfg.Retries {
					return err
				}
				v.log.Warn("starting the next verification generation", "err", err)
				sleep(ctx, v.backoff(failures))
				continue
			}
			if finished {
				return errRunFinished
			}
		default: // every task left is held by a live lease
			v.idleWait(ctx, dropped)
		}
	}
	return ctx.Err()
}

// idleWait waits while every task left is held. While this process holds one of them, the
// next change worth a look is its end (dropped) or another process's lease expiring: it waits
// for the first, or Lease/3, rather than asking the catalog every Poll (which, on a one-task
// join, would be most of the pass's catalog traffic). Otherwise it waits Poll.
func (v *verifier) idleWait(ctx context.Context, dropped <-chan struct{}) {
	if v.held.Load() == 0 {
		sleep(ctx, v.cfg.Poll)
		return
	}
	t := time.NewTimer(v.cfg.Lease / 3)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-dropped:
	case <-t.C:
	}
}

// droppedSignal is closed when this process next lets a task go.
func (v *verifier) droppedSignal() <-chan struct{} {
	v.droppedMu.Lock()
	defer v.droppedMu.Unlock()
	if v.dropped == nil {
		v.dropped = make(chan struct{})
	}
	return v.dropped
}

func (v *verifier) backoff(failures int) time.Duration {
	return min(time.Duration(failures)*500*time.Millisecond, 5*time.Second)
}

// currentGeneration returns the run's newest generation, making generation 0 (the full
// pass's partitions) if the run has none.
func (v *verifier) currentGeneration(ctx context.Context, run catalog.VerifyRun) (catalog.VerifyGeneration, error) {
	gens, err := v.cfg.Catalog.VerifyGenerations(ctx, run.Migration, run.RunID)
	if err != nil {
		return catalog.VerifyGeneration{}, err
	}
	if len(gens) > 0 {
		return gens[len(gens)-1], nil
	}
	// One worker of this process plans the full pass (partitioning a store can mean sorted
	// queries over all of it); the others wait for it and read what it made.
	v.planMu.Lock()
	defer v.planMu.Unlock()
	if gens, err = v.cfg.Catalog.VerifyGenerations(ctx, run.Migration, run.RunID); err != nil || len(gens) > 0 {
		if err != nil {
			return catalog.VerifyGeneration{}, err
		}
		return gens[len(gens)-1], nil
	}
	tasks, err := v.planFullPass(ctx)
	if err != nil {
		return catalog.VerifyGeneration{}, err
	}
	g, _, err := v.cfg.Catalog.CreateVerifyGeneration(ctx, catalog.VerifyGeneration{
		Migration: run.Migration, RunID: run.RunID, Generation: 0, Kind: catalog.GenerationFull,
		Maker: makerID(), Started: time.Now().UTC(),
	}, tasks)
	return g, err
}

// makerID is a fresh id for the tasks a process builds for one generation.
func makerID() string { return bson.NewObjectID().Hex() }

// merging says whether the full pass merges two ordered scans: both stores MongoDB
// collections keyed by _id, so that both scans return the same keys in the same order.
func (v *verifier) merging() bool {
	if v.cfg.Plan != PlanAuto && v.cfg.Plan != PlanMerge {
		return false
	}
	o, ok1 := v.cfg.Old.(*adapters.MongoStore)
	n, ok2 := v.cfg.New.(*adapters.MongoStore)
	return ok1 && ok2 && o.KeyField() == "_id" && n.KeyField() == "_id"
}

// planFullPass splits the stores into the full pass's tasks: merged key ranges; or one join
// task over both stores' partitions; or the old store's partitions (compared by look-up) and
// the new store's (looking for extra keys).
func (v *verifier) planFullPass(ctx context.Context) ([]catalog.VerifyTask, error) {
	oldParts, err := v.cfg.Old.Partitions(ctx, v.cfg.Partitions)
	if err != nil {
		return nil, fmt.Errorf("verify %s: partitioning the old store: %w", v.cfg.Migration, err)
	}
	if v.merging() {
		return partitionTasks(catalog.StoreBoth, oldParts), nil
	}
	if v.cfg.Plan == PlanMerge {
		return nil, fmt.Errorf("verify %s: %w: Plan %q needs two MongoDB collections keyed by _id", v.cfg.Migration, ErrInvalidConfig, PlanMerge)
	}
	newParts, err := v.cfg.New.Partitions(ctx, v.cfg.Partitions)
	if err != nil {
		return nil, fmt.Errorf("verify %s: partitioning the new store: %w", v.cfg.Migration, err)
	}
	if v.joining() {
		return []catalog.VerifyTask{joinTask(oldParts, newParts)}, nil
	}
	return append(partitionTasks(catalog.StoreOld, oldParts), partitionTasks(catalog.StoreNew, newParts)...), nil
}

func partitionTasks(store string, ps []adapters.Partition) []catalog.VerifyTask {
	out := make([]catalog.VerifyTask, len(ps))
	for i, p := range ps {
		out[i] = catalog.VerifyTask{Store: store, Min: p.Min, Max: p.Max, Segment: p.Segment, Segments: p.Segments}
	}
	return out
}

func partitionOf(t catalog.VerifyTask) adapters.Partition {
	return adapters.Partition{Min: t.Min, Max: t.Max, Segment: t.Segment, Segments: t.Segments}
}

// advance is called when every task of gen is done: it records the generation's end and the
// index check, then makes the next generation from the keys left to recheck. finished is
// true when a run of mode once has nothing left (the run is then marked finished); a
// continuous run waits for changed keys instead, and reports true only once a newer run has
// started (a tandem verify), which the continuous path then joins.
func (v *verifier) advance(ctx context.Context, run catalog.VerifyRun, gen catalog.VerifyGeneration) (finished bool, err error) {
	if !v.advanceMu.TryLock() {
		// Another worker of this process is advancing the run (its workers see the
		// generation done at once): wait for it, then look again, rather than finish the
		// generation, check the indexes and record drift a second time.
		v.advanceMu.Lock()
		v.advanceMu.Unlock()
		return false, nil
	}
	defer v.advanceMu.Unlock()
	cat := v.cfg.Catalog
	if gen.Finished.IsZero() {
		now := time.Now().UTC()
		if err := cat.FinishVerifyGeneration(ctx, gen, now); err != nil {
			return false, err
		}
		v.log.Info("verification generation finished", "generation", gen.Generation, "kind", gen.Kind, "took", now.Sub(gen.Started).Round(time.Millisecond))
		if err := v.checkIndexes(ctx, run, gen.Generation); err != nil {
			v.log.Warn("checking the new store's indexes", "err", err)
		}
		v.recordDrift(ctx, run)
	}
	if v.mode == ModeContinuous && gen.Generation > 0 && time.Since(gen.Started) < v.cfg.RecheckEvery {
		return v.idle(ctx, run)
	}
	// The next generation starts as of now, before the changes are read: it reads the keys
	// changed since its start, so a change made while this one reads them is not lost
	// between the two.
	asOf := time.Now().UTC()
	keys, err := v.recheckKeys(ctx, run, gen)
	if err != nil {
		return false, err
	}
	if len(keys) == 0 || gen.Generation >= int64(v.cfg.MaxGenerations) && v.mode == ModeOnce {
		if v.mode == ModeContinuous {
			return v.idle(ctx, run)
		}
		if len(keys) > 0 {
			v.log.Warn("verification stops rechecking: generation limit reached", "generation", gen.Generation, "keys", len(keys))
		}
		if err := cat.FinishVerifyRun(ctx, run.Migration, run.RunID, time.Now().UTC()); err != nil {
			return false, err
		}
		v.recordDrift(ctx, run)
		return true, nil
	}
	var tasks []catalog.VerifyTask
	for start := 0; start < len(keys); start += v.cfg.Batch {
		tasks = append(tasks, catalog.VerifyTask{Store: catalog.StoreRecheck, Keys: keys[start:min(start+v.cfg.Batch, len(keys))]})
	}
	next, created, err := cat.CreateVerifyGeneration(ctx, catalog.VerifyGeneration{
		Migration: run.Migration, RunID: run.RunID, Generation: gen.Generation + 1, Kind: catalog.GenerationRecheck,
		Maker: makerID(), Keys: int64(len(keys)), Started: asOf,
	}, tasks)
	if err == nil && created {
		v.log.Info("verification generation started", "generation", next.Generation, "keys", len(keys))
	}
	return false, err
}

// recheckKeys are the keys the generation after gen compares: the mismatches still pending,
// the confirmed ones repaired since they were last compared, and the keys that changed
// since gen started.
func (v *verifier) recheckKeys(ctx context.Context, run catalog.VerifyRun, gen catalog.VerifyGeneration) ([]any, error) {
	open, err := v.cfg.Catalog.OpenVerifyMismatches(ctx, run.Migration, run.RunID, catalog.MismatchPending, catalog.MismatchConfirmed)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var keys []any
	add := func(k any) {
		ks := adapters.KeyString(k)
		if !seen[ks] {
			seen[ks] = true
			keys = append(keys, k)
		}
	}
	for _, m := range open {
		if m.Kind == catalog.KindIndexMissing {
			continue // checked at every generation's end
		}
		if m.State == catalog.MismatchPending || (!m.Repaired.IsZero() && m.Repaired.After(m.LastSeen)) {
			add(m.Key)
		}
	}
	if v.cfg.Changes != nil {
		changed, err := v.cfg.Changes.ChangedSince(ctx, gen.Started, 100*v.cfg.Batch)
		if err != nil {
			return nil, fmt.Errorf("reading the keys changed since %s: %w", gen.Started.Format(time.RFC3339), err)
		}
		for _, k := range changed {
			add(k)
		}
	}
	return keys, nil
}

// noteError records in the task's lease and in the run what stopped the task, and releases
// the task so that any process may take it up again.
func (v *verifier) noteError(ctx context.Context, run catalog.VerifyRun, h *held, err error) {
	v.log.Warn("verification task failed; it will be taken up again", "task", h.task.ID, "err", err)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	msg := err.Error()
	if serr := v.cfg.Catalog.NoteVerifyError(ctx, run.Migration, run.RunID, msg); serr != nil {
		v.log.Warn("recording a verification error", "err", serr)
	}
	v.release(ctx, h, msg)
}

// summary puts the run's state together as the summary the legacy gate and tandem verify
// read; err is what ended this process's part early, nil if the run finished.
func (v *verifier) summary(ctx context.Context, run catalog.VerifyRun, started time.Time, err error) catalog.VerifySummary {
	s := catalog.VerifySummary{Started: started, Finished: time.Now().UTC(),
		Rechecked: v.rechecked.Load(), Repaired: v.repaired.Load(), RepairFailed: v.repairFailed.Load()}
	if err != nil {
		s.Aborted = err.Error()
	}
	if run.RunID == "" {
		return s
	}
	ctx, cancel := context.WithTimeout(ctx, summaryTimeout)
	defer cancel()
	st, serr := v.cfg.Catalog.VerifyRunState(ctx, run)
	if serr != nil {
		s.Aborted = errors.Join(err, serr).Error()
		return s
	}
	f := st.FoundTotal
	s.Keys = st.Compared
	s.Missing, s.Extra, s.Differing, s.Untransformable = f.Missing, f.Extra, f.Differing, f.Untransformable
	s.Mismatches = f.Total() + st.Pending
	s.Errors = f.Untransformable + v.keyErrors.Load()
	mm, _ := v.cfg.Catalog.VerifyMismatches(ctx, run.Migration, catalog.VerifyMismatchQuery{RunID: run.RunID,
		States: []string{catalog.MismatchConfirmed, catalog.MismatchPending, catalog.MismatchResolved}, Limit: maxSamples})
	for _, m := range mm {
		if m.ConfirmedOnce || m.State != catalog.MismatchResolved {
			s.Samples = append(s.Samples, m.KeyString+": "+m.Detail)
		}
	}
	s.Clean = err == nil && st.FullPassDone && s.Mismatches == 0 && s.Errors == 0 && len(st.Uncovered) == 0
	return s
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
