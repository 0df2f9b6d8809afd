package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/bench/benchenv"
)

// applyLimit bounds one apply measurement.
const applyLimit = 5 * time.Minute

// applyPart measures the tailer and the raw loop in alternating order, rounds times, and
// prints the medians.
func (b *bench) applyPart(ctx context.Context, n, rounds int) error {
	fmt.Printf("\n## apply rate: %d inserts already in the stream, until all are in the new collection\n\n", n)
	paths := []struct {
		name    string
		measure func(context.Context, int) (time.Duration, error)
	}{
		{"tailer", b.applyTailer},
		{"raw loop", b.applyRaw},
	}
	rates := make([][]float64, len(paths))
	for r := range rounds {
		for j := range paths {
			i := j
			if r%2 == 1 {
				i = len(paths) - 1 - j
			}
			d, err := paths[i].measure(ctx, n)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, paths[i].name, err)
			}
			rate := float64(n) / d.Seconds()
			rates[i] = append(rates[i], rate)
			fmt.Printf("# round %d, %s: %s changes/s (%s)\n", r+1, paths[i].name, benchenv.Ops(rate), d.Round(time.Millisecond))
		}
	}
	fmt.Println()
	fmt.Println("| path | changes/s (median) | rounds | ÷ raw loop (medians) | ÷ raw loop, median of the rounds' ratios |")
	fmt.Println("|---|---:|---|---:|---:|")
	raw := benchenv.Median(rates[1])
	for i, p := range paths {
		all := make([]string, len(rates[i]))
		ratios := make([]float64, len(rates[i]))
		for k, v := range rates[i] {
			all[k] = benchenv.Ops(v)
			ratios[k] = v / rates[1][k]
		}
		med := benchenv.Median(rates[i])
		fmt.Printf("| %s | %s | %s | %.2f | %.2f |\n", p.name, benchenv.Ops(med), strings.Join(all, ", "), med/raw, benchenv.Median(ratios))
	}
	return nil
}

// applyTailer saves the stream's position (Tailer.Prepare), inserts n documents into old, then
// runs the tailer and times until checkpoints covering all n changes are saved.
func (b *bench) applyTailer(ctx context.Context, n int) (time.Duration, error) {
	m, err := b.newMigration(ctx, "tailer")
	if err != nil {
		return 0, err
	}
	defer m.drop()
	var (
		mu      sync.Mutex
		applied int64
		once    sync.Once
		done    = make(chan struct{})
	)
	tl, err := m.tailer(b.poll, hooks{saved: func(a int64) {
		mu.Lock()
		defer mu.Unlock()
		if applied += a; applied >= int64(n) {
			once.Do(func() { close(done) })
		}
	}})
	if err != nil {
		return 0, err
	}
	if _, err := tl.Prepare(ctx); err != nil {
		return 0, err
	}
	if err := insertDocs(ctx, m.old, 0, n); err != nil {
		return 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	start := time.Now()
	go func() { runErr <- tl.Run(rctx) }()
	var d time.Duration
	select {
	case <-done:
		d = time.Since(start)
	case err := <-runErr:
		cancel()
		return 0, fmt.Errorf("the tailer stopped: %v", err)
	case <-time.After(applyLimit):
		err = fmt.Errorf("not all %d changes applied after %s", n, applyLimit)
	}
	cancel()
	if rerr := <-runErr; rerr != nil && err == nil {
		err = fmt.Errorf("the tailer: %w", rerr)
	}
	if err != nil {
		return 0, err
	}
	return d, m.converged(ctx)
}

// applyRaw opens the stream (Watch, whole documents), inserts n documents into old, then times
// a loop that reads the n events and upserts each transformed document with one ReplaceOne.
func (b *bench) applyRaw(ctx context.Context, n int) (time.Duration, error) {
	m, err := b.newMigration(ctx, "raw")
	if err != nil {
		return 0, err
	}
	defer m.drop()
	cs, err := m.old.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		return 0, err
	}
	defer func() { _ = cs.Close(context.Background()) }()
	if err := insertDocs(ctx, m.old, 0, n); err != nil {
		return 0, err
	}
	lctx, cancel := context.WithTimeout(ctx, applyLimit)
	defer cancel()
	start := time.Now()
	for applied := 0; applied < n; applied++ {
		if !cs.Next(lctx) {
			return 0, fmt.Errorf("the stream ended after %d of %d events: %w", applied, n, errors.Join(cs.Err(), lctx.Err()))
		}
		var ev struct {
			Full bson.D `bson:"fullDocument"`
		}
		if err := cs.Decode(&ev); err != nil || ev.Full == nil {
			return 0, fmt.Errorf("event %d has no fullDocument (%v): %s", applied, err, cs.Current)
		}
		out, err := m.spec.Forward(ev.Full)
		if err != nil {
			return 0, err
		}
		id := idOf(out)
		if _, err := m.new.ReplaceOne(lctx, bson.D{{Key: "_id", Value: id}}, out, options.Replace().SetUpsert(true)); err != nil {
			return 0, fmt.Errorf("upserting %v: %w", id, err)
		}
	}
	d := time.Since(start)
	return d, m.converged(ctx)
}
