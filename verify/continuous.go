package verify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/time/rate"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// samplePath is the catalog checkpoint of the rolling sample's position.
const samplePath = "verify-sample"

// Continuous verifies for as long as ctx lasts: the migration runtime's verify path. It joins
// the newest unfinished run (helping a `tandem verify` run through to its end) or starts a run
// of mode continuous, whose full pass is followed by recheck generations for as long as keys
// differ or change (Config.Changes), never finishing. Once the full pass is done it also reads
// a rolling sample of the old store at Config.SampleRate, so that a difference no change
// announces is found too, and records the drift (the mismatches outstanding) every
// Config.DriftEvery in the catalog and the Metrics' gauges. A failure (a store outage) is
// logged and the run is taken up again after a pause: Continuous returns only when ctx ends,
// with nil, or for an invalid Config.
func Continuous(ctx context.Context, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	v := newVerifier(cfg.withDefaults(), ModeContinuous)
	failures := 0
	for ctx.Err() == nil {
		run, err := v.joinOrStart(ctx, ModeContinuous)
		if err == nil {
			err = v.workContinuous(ctx, run)
		}
		switch {
		case ctx.Err() != nil:
		case err != nil:
			failures++
			v.log.Warn("continuous verification failed; it resumes", "run", run.RunID, "err", err)
			sleep(ctx, v.backoff(failures))
		default:
			failures = 0
		}
	}
	return nil
}

// workContinuous works on one run with the drift recorder and, for a continuous run, the
// rolling sample beside the workers.
func (v *verifier) workContinuous(ctx context.Context, run catalog.VerifyRun) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { v.driftLoop(ctx, run) })
	if run.Mode == ModeContinuous && v.cfg.SampleRate > 0 {
		wg.Go(func() { v.sampleLoop(ctx, run) })
	}
	err := v.work(ctx, run)
	cancel()
	wg.Wait()
	return err
}

// idle waits for work in a continuous run whose generations are done: Poll, after which the
// worker looks again for changed keys. It reports true when a newer run has started (the
// gate and the report read the newest run, so the continuous path moves on to it).
func (v *verifier) idle(ctx context.Context, run catalog.VerifyRun) (superseded bool, err error) {
	sleep(ctx, v.cfg.Poll)
	latest, err := v.cfg.Catalog.LatestVerifyRun(ctx, run.Migration)
	if err != nil {
		return false, err
	}
	return latest.Seq > run.Seq, nil
}

// driftLoop records the run's drift every DriftEvery.
func (v *verifier) driftLoop(ctx context.Context, run catalog.VerifyRun) {
	t := time.NewTicker(v.cfg.DriftEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			v.recordDrift(ctx, run)
		}
	}
}

// recordDrift computes the run's state and records its outstanding mismatches as a drift
// point and in the gauges.
func (v *verifier) recordDrift(ctx context.Context, run catalog.VerifyRun) {
	st, err := v.cfg.Catalog.VerifyRunState(ctx, run)
	if err != nil {
		if ctx.Err() == nil {
			v.log.Warn("computing the verification state for drift", "err", err)
		}
		return
	}
	p := catalog.VerifyDriftPoint{At: time.Now().UTC(), Generation: st.Generation, Confirmed: st.Confirmed.Total(),
		Pending: st.Pending, Backlog: st.Backlog, Compared: st.Compared}
	v.cfg.Metrics.confirmed.WithLabelValues(v.cfg.Migration).Set(float64(p.Confirmed))
	v.cfg.Metrics.pending.WithLabelValues(v.cfg.Migration).Set(float64(p.Pending))
	v.cfg.Metrics.backlog.WithLabelValues(v.cfg.Migration).Set(float64(p.Backlog))
	if err := v.cfg.Catalog.AddVerifyDrift(ctx, run.Migration, run.RunID, p); err != nil && ctx.Err() == nil {
		v.log.Warn("recording verification drift", "err", err)
	}
}

// samplePosition is where the rolling sample is: a partition of the old store (by index, of
// a plan of Partitions parts) and the last key read in it.
type samplePosition struct {
	Run       string `bson:"run"`
	Partition int    `bson:"partition"`
	After     any    `bson:"after,omitempty"`
	HasAfter  bool   `bson:"has_after"`
}

// sampleLoop reads the old store over and over, at SampleRate documents a second, once the
// run's full pass is done, comparing each batch as the full pass does; what differs is
// pending for the next generation to recheck. Its position is saved after each batch, so a
// restart goes on where it was.
func (v *verifier) sampleLoop(ctx context.Context, run catalog.VerifyRun) {
	lim := rate.NewLimiter(rate.Limit(v.cfg.SampleRate), max(1, min(v.cfg.Batch, int(v.cfg.SampleRate))))
	batch := lim.Burst()
	var parts []adapters.Partition // the plan of the sweep under way; nil: make one
	for ctx.Err() == nil {
		if done, err := v.fullPassDone(ctx, run); err != nil || !done {
			sleep(ctx, v.cfg.Poll*5)
			continue
		}
		var err error
		if parts, err = v.sampleRound(ctx, run, lim, batch, parts); err != nil && ctx.Err() == nil {
			v.log.Warn("verification sample failed; it goes on", "err", err)
			parts = nil
			sleep(ctx, time.Second)
		}
	}
}

func (v *verifier) fullPassDone(ctx context.Context, run catalog.VerifyRun) (bool, error) {
	gens, err := v.cfg.Catalog.VerifyGenerations(ctx, run.Migration, run.RunID)
	if err != nil || len(gens) == 0 {
		return false, err
	}
	return !gens[0].Finished.IsZero(), nil
}

// errSampleMoved ends a scan of the sample at its batch size.
var errSampleMoved = errors.New("sample batch read")

// sampleRound reads and compares one batch of the sample and saves the position. parts is
// the partition plan of the sweep under way (nil: none yet); it returns the plan to go on
// with, which is made again once a sweep is over: planning reads the old store's edges and
// split keys, which costs far more than a batch of the sample (sorted skips on MongoDB,
// sorts of the whole collection on FerretDB), and the plan changes only as the store does.
func (v *verifier) sampleRound(ctx context.Context, run catalog.VerifyRun, lim *rate.Limiter, batch int, parts []adapters.Partition) ([]adapters.Partition, error) {
	cat := v.cfg.Catalog
	var pos samplePosition
	ok, err := cat.LoadCheckpoint(ctx, run.Migration, samplePath, &pos)
	if err != nil {
		return parts, err
	}
	if !ok || pos.Run != run.RunID {
		pos = samplePosition{Run: run.RunID}
	}
	if parts == nil {
		if parts, err = v.cfg.Old.Partitions(ctx, v.cfg.Partitions); err != nil {
			return nil, fmt.Errorf("partitioning the old store for the sample: %w", err)
		}
	}
	if pos.Partition >= len(parts) {
		pos = samplePosition{Run: run.RunID}
	}
	opts := adapters.ScanOptions{Batch: batch}
	if pos.HasAfter {
		opts.After = pos.After
	}
	var got []bson.D
	err = v.cfg.Old.Scan(ctx, parts[pos.Partition], opts, func(docs []bson.D) error {
		got = docs
		return errSampleMoved
	})
	if err != nil && !errors.Is(err, errSampleMoved) {
		return parts, fmt.Errorf("reading the sample: %w", err)
	}
	if len(got) == 0 { // the partition is done: the next one
		pos = samplePosition{Run: run.RunID, Partition: (pos.Partition + 1) % len(parts)}
		if pos.Partition == 0 {
			parts = nil // the sweep is over: the next one plans afresh
		}
		return parts, cat.SaveCheckpoint(ctx, run.Migration, samplePath, pos)
	}
	if err := waitN(ctx, lim, len(got)); err != nil {
		return parts, err
	}
	if err := v.compareSample(ctx, run, got); err != nil {
		return parts, err
	}
	last, err := v.cfg.Old.KeyOf(got[len(got)-1])
	if err != nil {
		return parts, err
	}
	pos.After, pos.HasAfter = last, true
	return parts, cat.SaveCheckpoint(ctx, run.Migration, samplePath, pos)
}

// compareSample compares sampled old documents with the new store; differences are noted
// as first sightings in the run's newest generation.
func (v *verifier) compareSample(ctx context.Context, run catalog.VerifyRun, docs []bson.D) error {
	keys, byKey := v.keysOf(v.cfg.Old, passOld, docs)
	if len(keys) == 0 {
		return nil
	}
	cur, err := v.cfg.New.BatchGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("reading %d sampled keys from the new store: %w", len(keys), err)
	}
	gens, err := v.cfg.Catalog.VerifyGenerations(ctx, run.Migration, run.RunID)
	if err != nil || len(gens) == 0 {
		return err
	}
	gen := gens[len(gens)-1].Generation
	for i, k := range keys {
		if err := v.note(ctx, run, gen, k, v.classify(byKey[i], cur[adapters.KeyString(k)]), false); err != nil {
			return err
		}
	}
	v.cfg.Metrics.compared.WithLabelValues(v.cfg.Migration, catalog.StoreSample).Add(float64(len(keys)))
	v.progress(ctx, map[string]int64{"sampled": int64(len(keys))})
	return nil
}
