package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"golang.org/x/time/rate"

	"github.com/tandemdb/tandem/bench/benchenv"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/cdc/scaleout"
)

// drainLimit bounds the wait, after the writers stop, for the new collection to converge.
const drainLimit = 2 * time.Minute

// opCycle is the writers' mix, op i being opCycle[i%10]: half inserts, 4 in 10 updates
// ($set of one field), 1 in 10 deletes.
var opCycle = [10]byte{'i', 'u', 'i', 'u', 'i', 'd', 'i', 'u', 'i', 'u'}

// lagResult is one lag round.
type lagResult struct {
	writes  int
	elapsed time.Duration
	sampled []time.Duration // Tailer.Lag every -sample while the writers ran
	changes []time.Duration // per change: when its checkpoint was saved minus its time
	writeRT []time.Duration // each write's round trip
	steps   *steps          // the tailer's converge and checkpoint times
}

func (r lagResult) rate() float64 { return float64(r.writes) / r.elapsed.Seconds() }

// lagPart runs the lag rounds and prints one line per round and a table.
func (b *bench) lagPart(ctx context.Context) error {
	fmt.Printf("\n## lag under a steady %g writes/s for %s (%d writers, one limiter)\n\n", *flagRate, *flagDuration, *flagWriters)
	fmt.Println("Each round also runs the same writers with no tailer reading the stream (the control), in alternating order.")
	fmt.Println()
	var results, controls []lagResult
	for r := range *flagLagRounds {
		for _, tailed := range []bool{r%2 == 0, r%2 == 1} {
			res, err := b.lagRound(ctx, tailed)
			if err != nil {
				return fmt.Errorf("round %d (tailer %v): %w", r+1, tailed, err)
			}
			what := "no tailer (control)"
			if tailed {
				what = "tailer"
				results = append(results, res)
			} else {
				controls = append(controls, res)
			}
			fmt.Printf("# round %d, %s: %d writes in %s = %s writes/s (asked %g); write round trip p50 %s p99 %s",
				r+1, what, res.writes, res.elapsed.Round(time.Millisecond), benchenv.Ops(res.rate()), *flagRate,
				benchenv.Dur(pct(res.writeRT, 0.5)), benchenv.Dur(pct(res.writeRT, 0.99)))
			if tailed {
				st := res.steps
				fmt.Printf("; %d lag samples, %d changes applied in %d batches; ConvergeBatch p50 %s p99 %s max %s; checkpoint save p50 %s p99 %s max %s",
					len(res.sampled), len(res.changes), len(st.converge),
					benchenv.Dur(pct(st.converge, 0.5)), benchenv.Dur(pct(st.converge, 0.99)), benchenv.Dur(pct(st.converge, 1)),
					benchenv.Dur(pct(st.save, 0.5)), benchenv.Dur(pct(st.save, 0.99)), benchenv.Dur(pct(st.save, 1)))
			}
			fmt.Println()
		}
	}
	fmt.Println()
	fmt.Println("| round | writes/s, no tailer | writes/s, tailer | Tailer.Lag p50 | p99 | max | per change p50 | p99 | max |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	var crates, rates, sp50, sp99, cp50, cp99 []float64
	for i, r := range results {
		c := controls[i]
		fmt.Printf("| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", i+1, benchenv.Ops(c.rate()), benchenv.Ops(r.rate()),
			benchenv.Dur(pct(r.sampled, 0.5)), benchenv.Dur(pct(r.sampled, 0.99)), benchenv.Dur(pct(r.sampled, 1)),
			benchenv.Dur(pct(r.changes, 0.5)), benchenv.Dur(pct(r.changes, 0.99)), benchenv.Dur(pct(r.changes, 1)))
		crates, rates = append(crates, c.rate()), append(rates, r.rate())
		sp50, sp99 = append(sp50, float64(pct(r.sampled, 0.5))), append(sp99, float64(pct(r.sampled, 0.99)))
		cp50, cp99 = append(cp50, float64(pct(r.changes, 0.5))), append(cp99, float64(pct(r.changes, 0.99)))
	}
	d := func(v []float64) string { return benchenv.Dur(time.Duration(benchenv.Median(v))) }
	fmt.Printf("| median | %s | %s | %s | %s | | %s | %s | |\n", benchenv.Ops(benchenv.Median(crates)), benchenv.Ops(benchenv.Median(rates)),
		d(sp50), d(sp99), d(cp50), d(cp99))
	for _, x := range []struct {
		what string
		v    []float64
	}{{"with no tailer", crates}, {"with the tailer", rates}} {
		if med := benchenv.Median(x.v); med < 0.95**flagRate {
			fmt.Printf("\nThe writers reached %s writes/s %s, not the %g asked for (median).\n", benchenv.Ops(med), x.what, *flagRate)
		}
	}
	return nil
}

// pct is the q-quantile of unsorted durations (q 1: the largest).
func pct(v []time.Duration, q float64) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return benchenv.Percentile(s, q)
}

// lagRound writes at the limiter's pace for -duration into a fresh migration's old
// collection. With tailed, a tailer follows it, its lag is sampled, and once the writes stop
// the round waits for the new collection to converge.
func (b *bench) lagRound(ctx context.Context, tailed bool) (lagResult, error) {
	var res lagResult
	m, err := b.newMigration(ctx, "lag")
	if err != nil {
		return res, err
	}
	defer m.drop()
	w := &writers{coll: m.old, limiter: rate.NewLimiter(rate.Limit(*flagRate), 1)}
	if !tailed {
		start := time.Now()
		err := w.run(ctx, *flagWriters, start.Add(*flagDuration))
		res.elapsed, res.writes, res.writeRT = time.Since(start), int(w.done.Load()), w.roundTrips
		return res, err
	}
	ts := &timedSource{}
	var mu sync.Mutex // guards res.changes
	res.steps = &steps{}
	tl, err := m.tailer(b.poll, hooks{steps: res.steps, wrap: func(s cdc.Source) cdc.Source { ts.Source = s; return ts }, saved: func(applied int64) {
		now := time.Now()
		ats := ts.pop(int(applied))
		mu.Lock()
		for _, at := range ats {
			res.changes = append(res.changes, now.Sub(at))
		}
		mu.Unlock()
	}})
	if err != nil {
		return res, err
	}
	if _, err := tl.Prepare(ctx); err != nil {
		return res, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- tl.Run(rctx) }()
	time.Sleep(500 * time.Millisecond) // the stream is open and caught up before the writes start

	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampleDone)
		tick := time.NewTicker(*flagSample)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				res.sampled = append(res.sampled, tl.Lag())
			}
		}
	}()
	start := time.Now()
	werr := w.run(ctx, *flagWriters, start.Add(*flagDuration))
	res.elapsed = time.Since(start)
	close(stopSampling)
	<-sampleDone
	res.writes, res.writeRT = int(w.done.Load()), w.roundTrips
	if werr != nil {
		return res, werr
	}
	for deadline := time.Now().Add(drainLimit); ; time.Sleep(200 * time.Millisecond) {
		select {
		case err := <-runErr:
			return res, fmt.Errorf("the tailer stopped: %v", err)
		default:
		}
		err := m.converged(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("not converged %s after the writes: %w", drainLimit, err)
		}
	}
	cancel()
	if err := <-runErr; err != nil {
		return res, fmt.Errorf("the tailer: %w", err)
	}
	return res, nil
}

// timedSource passes a source's batches on and remembers the time of each change, in order,
// until the tailer saves the checkpoint that covers it (pop). It adds one batch of buffering
// between the source and the tailer's queue (the batch it holds while the queue is full).
type timedSource struct {
	cdc.Source
	mu      sync.Mutex
	pending []time.Time
}

func (s *timedSource) Run(ctx context.Context, from cdc.Position, out chan<- cdc.Batch) error {
	mid := make(chan cdc.Batch)
	errc := make(chan error, 1)
	go func() { errc <- s.Source.Run(ctx, from, mid) }()
	for {
		select {
		case err := <-errc:
			return err
		case b := <-mid:
			s.mu.Lock()
			for _, c := range b.Changes {
				s.pending = append(s.pending, c.At)
			}
			s.mu.Unlock()
			select {
			case out <- b:
			case <-ctx.Done():
				return <-errc
			}
		}
	}
}

// pop removes and returns the times of the oldest n changes.
func (s *timedSource) pop(n int) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = min(n, len(s.pending))
	out := slices.Clone(s.pending[:n])
	s.pending = s.pending[n:]
	return out
}

// writers write single documents into coll at the limiter's pace until a deadline.
type writers struct {
	coll    *mongo.Collection
	limiter *rate.Limiter
	next    atomic.Int64 // the next op's number
	done    atomic.Int64 // writes acknowledged

	mu         sync.Mutex
	live       []string // keys inserted and not deleted
	roundTrips []time.Duration
}

// run runs n writers until deadline (a write in flight then completes); the first error
// stops them all.
func (w *writers) run(ctx context.Context, n int, deadline time.Time) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	paced, stop := context.WithDeadline(ctx, deadline)
	defer stop()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				if err := w.limiter.Wait(paced); err != nil {
					return // the deadline (Wait also fails when it would wait past it), or an error
				}
				if err := w.one(ctx); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// one makes the next write of opCycle: an insert of a new key, or an update or a delete of a
// live one (an insert when none is live).
func (w *writers) one(ctx context.Context) error {
	i := int(w.next.Add(1) - 1)
	op := opCycle[i%len(opCycle)]
	w.mu.Lock()
	var key string
	if len(w.live) > 0 && op != 'i' {
		j := rand.IntN(len(w.live))
		key = w.live[j]
		if op == 'd' { // no later write picks it
			w.live[j] = w.live[len(w.live)-1]
			w.live = w.live[:len(w.live)-1]
		}
	} else {
		op, key = 'i', docID(i)
	}
	w.mu.Unlock()
	start := time.Now()
	var err error
	switch op {
	case 'i':
		_, err = w.coll.InsertOne(ctx, scaleout.Doc(key, int32(i%90)))
	case 'u':
		_, err = w.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}}, bson.D{{Key: "$set", Value: bson.D{{Key: "age", Value: int32(i % 90)}}}})
	case 'd':
		_, err = w.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: key}})
	}
	if err != nil {
		return fmt.Errorf("write %d (%c %s): %w", i, op, key, err)
	}
	rt := time.Since(start)
	w.done.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.roundTrips = append(w.roundTrips, rt)
	if op == 'i' {
		w.live = append(w.live, key)
	}
	return nil
}
