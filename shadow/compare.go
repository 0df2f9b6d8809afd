package shadow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/transform"
)

// SourceShadowRead is the Source of the mismatches a Comparer records.
const SourceShadowRead = "shadow-read"

// Mismatches is where a Comparer records what it finds (the catalog).
type Mismatches interface {
	RecordMismatch(ctx context.Context, m catalog.Mismatch) (bson.ObjectID, error)
	MarkRepaired(ctx context.Context, id bson.ObjectID) error
}

// ComparerConfig wires a Comparer.
type ComparerConfig struct {
	// Engine holds the stores and the forward transform, and repairs mismatches. Required.
	Engine *Engine
	// Migration names the migration in mismatches. Optional; default: the engine's.
	Migration string
	// Mismatches records mismatches. Required.
	Mismatches Mismatches
	// Workers is the number of comparing goroutines. Optional; default 2.
	Workers int
	// Depth is the number of documents that may wait for a worker; Submit drops the rest.
	// Optional; default 1024.
	Depth int
	// Timeout bounds the work on one document (reads, recheck, record and repair; Settle
	// comes on top). Optional; default 5s.
	Timeout time.Duration
	// Settle, when positive, is how long a worker waits before rechecking a second time a
	// difference that survived the first recheck, so that a converge still queued (an async
	// shadow write, another proxy's, the change stream's) can land first; only a difference
	// that survives both is a mismatch. Optional; default 0: no second recheck, right for the
	// dual and cutover phases, where writes converge before the client's reply. In the shadow
	// phase, set it to the expected converge lag, or read-after-write documents show up as
	// mismatches (repaired, harmlessly, but counted).
	Settle time.Duration
	// OnCompared, optional, is told of every document compared (not of those dropped or
	// failed), for instance to watch the mismatch rate. It runs on the workers: it must not
	// block.
	OnCompared func(mismatch bool)
	// Log is the logger. Optional; default: the engine's.
	Log *slog.Logger
	// Metrics receives counts. Optional; default: the engine's.
	Metrics *Metrics
}

// Comparer checks documents the proxy read from the old store against the new store (shadow
// reads): the transform of each must be what the new store holds under its key. A difference
// is rechecked against fresh reads of both stores before it counts, because a write racing the
// read makes a difference that is no error; one that survives is recorded as a mismatch and
// repaired by a converge.
type Comparer struct {
	cfg   ComparerConfig
	e     *Engine
	queue chan bson.Raw

	ctx    context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.RWMutex
	closed bool
}

// NewComparer checks cfg and starts the workers.
func NewComparer(cfg ComparerConfig) (*Comparer, error) {
	switch {
	case cfg.Engine == nil:
		return nil, errors.New("shadow: ComparerConfig.Engine is required")
	case cfg.Mismatches == nil:
		return nil, errors.New("shadow: ComparerConfig.Mismatches is required")
	}
	if cfg.Migration == "" {
		cfg.Migration = cfg.Engine.cfg.Migration
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Depth <= 0 {
		cfg.Depth = 1024
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = cfg.Engine.cfg.Log
	}
	if cfg.Metrics == nil {
		cfg.Metrics = cfg.Engine.cfg.Metrics
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Comparer{cfg: cfg, e: cfg.Engine, queue: make(chan bson.Raw, cfg.Depth), ctx: ctx, cancel: cancel}
	for range cfg.Workers {
		c.wg.Add(1)
		go c.work()
	}
	return c, nil
}

// Submit queues documents as the old store returned them for comparison, without waiting:
// it copies each document it keeps (the caller may reuse its buffers at once) and drops, and
// counts, those that find the queue full. It reports whether it kept them all. A projected
// document is no false alarm: the recheck compares the stored document.
func (c *Comparer) Submit(docs []bson.Raw) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	all := true
	for _, d := range docs {
		if c.closed || len(c.queue) == cap(c.queue) { // full: spare the copy
			c.count(readDropped)
			all = false
			continue
		}
		select {
		case c.queue <- bson.Raw(bytes.Clone(d)):
		default:
			c.count(readDropped)
			all = false
		}
	}
	return all
}

func (c *Comparer) count(result string) { c.cfg.Metrics.reads.WithLabelValues(result).Inc() }

func (c *Comparer) work() {
	defer c.wg.Done()
	for raw := range c.queue {
		if c.ctx.Err() != nil { // Close gave up: what is left is dropped
			c.count(readDropped)
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.Timeout+c.cfg.Settle)
		c.compare(ctx, raw)
		cancel()
	}
}

// compare checks one document; see Comparer.
func (c *Comparer) compare(ctx context.Context, raw bson.Raw) {
	var doc bson.D
	if err := bson.Unmarshal(raw, &doc); err != nil {
		c.fail("", "decoding the document", err)
		return
	}
	key, err := c.e.cfg.Old.KeyOf(doc)
	if err != nil {
		c.fail("", "reading the key", err)
		return
	}
	ks := adapters.KeyString(key)
	want, err := c.forward(doc)
	if err != nil {
		c.fail(ks, "transforming", err)
		return
	}
	got, err := getOrNil(ctx, c.e.cfg.New, key)
	if err != nil {
		c.fail(ks, "reading the new store", err)
		return
	}
	if sameDoc(want, got) {
		c.compared(false)
		return
	}
	if want, got, err = c.recheck(ctx, key, ks, doc, want); err != nil {
		c.fail(ks, "rechecking", err)
		return
	}
	if !sameDoc(want, got) && c.cfg.Settle > 0 {
		if err := c.settle(ctx); err != nil {
			c.fail(ks, "settling", err)
			return
		}
		if want, got, err = c.recheck(ctx, key, ks, doc, want); err != nil {
			c.fail(ks, "rechecking", err)
			return
		}
	}
	if sameDoc(want, got) {
		c.cfg.Log.Debug("shadow read differed, but not after a recheck (a write raced the read)", "migration", c.cfg.Migration, "key", ks)
		c.compared(false)
		return
	}
	c.mismatch(ctx, key, ks, docDiff(want, got))
}

// settle waits Settle, or until ctx ends.
func (c *Comparer) settle(ctx context.Context) error {
	t := time.NewTimer(c.cfg.Settle)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// forward returns the document the new store should hold for doc, as the new store returns it.
func (c *Comparer) forward(doc bson.D) (bson.D, error) {
	out, err := c.e.cfg.Forward(doc)
	if err != nil {
		return nil, err
	}
	return c.e.cfg.New.Normalize(out)
}

// recheck reads both stores again, holding the key's lock stripe so that no converge of the
// key in this process is half done, and returns what the new store should hold (nil: nothing)
// and what it holds. The captured document's transform is reused if the old store still holds
// exactly that document.
func (c *Comparer) recheck(ctx context.Context, key adapters.Key, ks string, captured, capturedWant bson.D) (want, got bson.D, err error) {
	stripe := &c.e.stripes[stripeOf(ks, len(c.e.stripes))]
	stripe.Lock()
	old, err := getOrNil(ctx, c.e.cfg.Old, key)
	if err == nil {
		got, err = getOrNil(ctx, c.e.cfg.New, key)
	}
	stripe.Unlock()
	switch {
	case err != nil:
		return nil, nil, err
	case old == nil:
		return nil, got, nil
	case transform.Equal(old, captured):
		return capturedWant, got, nil
	}
	if want, err = c.forward(old); err != nil {
		return nil, nil, fmt.Errorf("transforming the current document: %w", err)
	}
	return want, got, nil
}

// mismatch counts, records and repairs a difference that survived the recheck.
func (c *Comparer) mismatch(ctx context.Context, key adapters.Key, ks string, diff []string) {
	c.compared(true)
	c.cfg.Log.Warn("shadow read mismatch", "migration", c.cfg.Migration, "key", ks, "paths", transform.DiffPaths(diff))
	c.cfg.Log.Debug("shadow read mismatch: the difference, logged at debug only: it is user data", "migration", c.cfg.Migration, "key", ks, "diff", diff)
	id, recErr := c.cfg.Mismatches.RecordMismatch(ctx, catalog.Mismatch{
		Migration: c.cfg.Migration, Key: key, Source: SourceShadowRead, Diff: diff,
	})
	if recErr != nil {
		c.cfg.Log.Error("recording a shadow read mismatch failed; repairing anyway", "migration", c.cfg.Migration, "key", ks, "err", recErr)
	}
	res, err := c.e.Converge(ctx, key, Forward)
	if err == nil && res.Action == DeadLettered {
		err = fmt.Errorf("dead-lettered: %s", res.Reason)
	}
	if err != nil {
		c.cfg.Metrics.repairs.WithLabelValues("failed").Inc()
		c.cfg.Log.Warn("repairing a shadow read mismatch failed", "migration", c.cfg.Migration, "key", ks, "err", err)
		return
	}
	c.cfg.Metrics.repairs.WithLabelValues("repaired").Inc()
	if recErr != nil {
		return
	}
	if err := c.cfg.Mismatches.MarkRepaired(ctx, id); err != nil {
		c.cfg.Log.Error("marking a shadow read mismatch repaired failed", "migration", c.cfg.Migration, "key", ks, "err", err)
	}
}

func (c *Comparer) compared(mismatch bool) {
	if mismatch {
		c.count(readMismatch)
	} else {
		c.count(readMatch)
	}
	if c.cfg.OnCompared != nil {
		c.cfg.OnCompared(mismatch)
	}
}

func (c *Comparer) fail(ks, doing string, err error) {
	c.count(readError)
	c.cfg.Log.Debug("shadow read not compared", "migration", c.cfg.Migration, "key", ks, "while", doing, "err", err)
}

// Close stops accepting documents and waits for the queued ones to be compared. If ctx ends
// first, the rest are dropped (counted as such) and Close returns ctx's error.
func (c *Comparer) Close(ctx context.Context) error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		c.cancel()
		<-done
		return ctx.Err()
	}
}

// getOrNil is Get with a missing document as nil.
func getOrNil(ctx context.Context, s adapters.Store, key adapters.Key) (bson.D, error) {
	d, err := s.Get(ctx, key)
	if errors.Is(err, adapters.ErrNotFound) {
		return nil, nil
	}
	return d, err
}

func sameDoc(a, b bson.D) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return transform.Equal(a, b)
}

// docDiff is Diff, with one line for a document present on one side only.
func docDiff(want, got bson.D) []string {
	switch {
	case got == nil:
		return []string{"document missing from the new store"}
	case want == nil:
		return []string{"document in the new store but not in the old"}
	}
	return transform.Diff(want, got)
}
