package shadow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// Journal is the durable record of changed keys that converge workers consume (the cdc
// package's journal source). The Writer appends the keys it could not converge itself.
type Journal interface {
	// Append records entries durably or returns an error. After an error some entries may
	// have been recorded anyway: a key journaled twice is converged twice, which is harmless.
	Append(ctx context.Context, entries ...adapters.JournalEntry) error
}

// The reasons a Writer journals a key (adapters.JournalEntry.Reason).
const (
	// ReasonQueueFull: the key's converge queue was full (or the Writer closed), so the
	// write was not converged by the proxy at all.
	ReasonQueueFull = "queue_full"
	// ReasonConvergeFailed: the converge returned an error (a store unreachable, a timeout).
	ReasonConvergeFailed = "converge_failed"
	// ReasonUnkeyedWrite: the proxy could not name the keys the write touched; the entry holds
	// its filter instead.
	ReasonUnkeyedWrite = "unkeyed_write"
)

// StepJournal is the Step of a dead letter the Writer records when the journal itself fails.
// Such a dead letter carries no spec version: the spec is not at fault, so the next
// Engine.RetryDeadLetters converges the key again.
const StepJournal = "journal"

// Sentinel errors of Writer.Sync.
var (
	// ErrNotConverged means the new store could not be brought in line with the old one
	// before the deadline; the error says whether the keys were journaled (then a converge
	// worker will finish the job) or recorded as dead letters.
	ErrNotConverged = errors.New("write not converged to the new store")
	// ErrDeadLettered means a document could not be transformed or written to the new store
	// and was recorded as a dead letter: the new store lacks its latest state until the spec
	// or the document is fixed. Journaling would not help, so the keys are not journaled.
	ErrDeadLettered = errors.New("document dead-lettered")
)

// Label values of tandem_shadow_writes_total's mode.
const (
	modeAsync   = "async"
	modeSync    = "sync"
	modeUnkeyed = "unkeyed"
)

// journalBatch is the most entries appended to the journal at once.
const journalBatch = 500

// WriterConfig wires a Writer.
type WriterConfig struct {
	// Engine converges the keys (forward). Required.
	Engine *Engine
	// Journal receives the keys that were not converged. Required.
	Journal Journal
	// Namespace is "database.collection" of the old collection the proxy writes to; it is
	// recorded in journal entries. Required.
	Namespace string
	// Workers is the number of converge workers of Async. Optional; default: the engine's
	// Stripes.
	Workers int
	// Depth is the queue length of each worker. Optional; default 1024. A key that finds its
	// worker's queue full is journaled instead (ReasonQueueFull).
	Depth int
	// Timeout bounds one converge (Async) or one batch (Sync), and one journal append.
	// Optional; default 5s.
	Timeout time.Duration
	// DeadLetters takes the keys the journal could not. Optional; default: the engine's.
	DeadLetters DeadLetters
	// OnNewStoreResult, optional, is told of every converge's outcome (failed: it returned an
	// error — mostly the new store unreachable or slow), for the automatic-rollback watchdog;
	// converges abandoned by Close or by Sync's caller are not reported. It runs on converge
	// workers and on Sync's caller: it must not block.
	OnNewStoreResult func(failed bool)
	// Log is the logger. Optional; default: the engine's.
	Log *slog.Logger
	// Metrics receives counts. Optional; default: the engine's.
	Metrics *Metrics
}

// Writer is the proxy's write path into shadow: after a write has been applied to the old
// store, it converges the keys the write touched to the new store — asynchronously in the
// shadow phase (Async), before the client's reply in the dual and cutover phases (Sync). A key
// it cannot converge goes to the journal, and if the journal fails, to the dead letters: a key
// is never dropped silently. Entries the journal and the dead letters both refuse stay in
// memory and are retried until Close.
type Writer struct {
	cfg    WriterConfig
	e      *Engine
	pool   *Pool
	closed atomic.Bool

	mu        sync.Mutex
	backlog   []pending // entries waiting for the journal
	drained   bool      // Close took the backlog for the last time: entries are recorded at once
	wake      chan struct{}
	stop      chan struct{}
	spillDone chan struct{}
}

// pending is a journal entry not yet recorded, with the mode its metrics are counted under.
type pending struct {
	entry adapters.JournalEntry
	mode  string
}

// NewWriter checks cfg and starts the Writer's converge workers and its journal goroutine.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	switch {
	case cfg.Engine == nil:
		return nil, errors.New("shadow: WriterConfig.Engine is required")
	case cfg.Journal == nil:
		return nil, errors.New("shadow: WriterConfig.Journal is required")
	case cfg.Namespace == "":
		return nil, errors.New("shadow: WriterConfig.Namespace is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.DeadLetters == nil {
		cfg.DeadLetters = cfg.Engine.cfg.DeadLetters
	}
	if cfg.Log == nil {
		cfg.Log = cfg.Engine.cfg.Log
	}
	if cfg.Metrics == nil {
		cfg.Metrics = cfg.Engine.cfg.Metrics
	}
	w := &Writer{
		cfg: cfg, e: cfg.Engine,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), spillDone: make(chan struct{}),
	}
	w.pool = cfg.Engine.newPool(cfg.Workers, cfg.Depth, nil, cfg.Timeout)
	go w.spillLoop()
	return w, nil
}

func (w *Writer) entry(key adapters.Key, op, reason string, at time.Time) adapters.JournalEntry {
	return adapters.JournalEntry{Migration: w.e.cfg.Migration, Key: key, Namespace: w.cfg.Namespace, Op: op, Reason: reason, At: at}
}

func (w *Writer) count(mode, result string) {
	w.cfg.Metrics.writes.WithLabelValues(mode, result).Inc()
}

func (w *Writer) newStoreResult(failed bool) {
	if w.cfg.OnNewStoreResult != nil {
		w.cfg.OnNewStoreResult(failed)
	}
}

// Async converges keys (the old store's keys of documents op wrote) in the background. It
// never waits: a key whose worker queue is full is journaled (ReasonQueueFull), and a converge
// that fails is journaled (ReasonConvergeFailed), both off the caller's goroutine. keys must
// be plain BSON values (string, int32, bson.ObjectID, …), not views of a buffer the caller
// reuses.
func (w *Writer) Async(keys []adapters.Key, op string) {
	if len(keys) == 0 {
		return
	}
	at := time.Now().UTC()
	report := func(res Result, err error) { w.asyncDone(res, err, op, at) }
	for _, k := range keys {
		if w.closed.Load() || !w.pool.trySubmit(k, Forward, report) {
			w.spill(context.Background(), pending{entry: w.entry(k, op, ReasonQueueFull, at), mode: modeAsync})
		}
	}
}

// asyncDone runs on a converge worker with the outcome of an Async key.
func (w *Writer) asyncDone(res Result, err error, op string, at time.Time) {
	if !errors.Is(err, context.Canceled) { // cancelled: abandoned by Close, no verdict on the store
		w.newStoreResult(err != nil)
	}
	switch {
	case err != nil:
		w.cfg.Log.Debug("shadow write not converged; journaling its key", "ns", w.cfg.Namespace, "key", adapters.KeyString(res.Key), "err", err)
		w.spill(context.Background(), pending{entry: w.entry(res.Key, op, ReasonConvergeFailed, at), mode: modeAsync})
	case res.Action == DeadLettered:
		w.count(modeAsync, writeDeadLettered)
	default:
		w.count(modeAsync, writeConverged)
	}
}

// Sync converges keys now, within Timeout: the dual and cutover phases call it before the
// client gets its reply. On failure it journals the keys (ReasonConvergeFailed) and returns an
// error wrapping ErrNotConverged and the cause; a key that was dead-lettered makes it return
// an error wrapping ErrDeadLettered. The proxy decides what the client sees.
func (w *Writer) Sync(ctx context.Context, keys []adapters.Key, op string) error {
	if len(keys) == 0 {
		return nil
	}
	at := time.Now().UTC()
	cctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	results, err := w.e.ConvergeBatch(cctx, keys, Forward)
	cancel()
	if err != nil {
		batch := make([]pending, 0, len(keys))
		seen := make(map[string]struct{}, len(keys))
		for _, k := range keys {
			ks := adapters.KeyString(k)
			if _, dup := seen[ks]; dup {
				continue
			}
			seen[ks] = struct{}{}
			if ctx.Err() == nil { // else the caller gave up: no verdict on the store
				w.newStoreResult(true)
			}
			batch = append(batch, pending{entry: w.entry(k, op, ReasonConvergeFailed, at), mode: modeSync})
		}
		left, journaled := w.flush(ctx, batch)
		where := "journaled"
		switch {
		case len(left) > 0:
			where = "kept in memory for the journal"
			for _, p := range left {
				w.spill(ctx, p)
			}
		case !journaled:
			where = "recorded as dead letters"
		}
		return fmt.Errorf("sync %s %s of %d keys (%s): %w: %w", op, w.cfg.Namespace, len(batch), where, ErrNotConverged, err)
	}
	var dead []string
	for _, r := range results {
		w.newStoreResult(false)
		if r.Action == DeadLettered {
			w.count(modeSync, writeDeadLettered)
			dead = append(dead, adapters.KeyString(r.Key))
		} else {
			w.count(modeSync, writeConverged)
		}
	}
	if len(dead) > 0 {
		return fmt.Errorf("sync %s %s: %w: %s", op, w.cfg.Namespace, ErrDeadLettered, strings.Join(dead, ", "))
	}
	return nil
}

// Unkeyed journals a write whose keys the proxy could not name (ReasonUnkeyedWrite, with its
// filter, copied): the change-stream path converges what it touched. It does not wait for the
// journal, except after Close, when it appends at once under ctx.
func (w *Writer) Unkeyed(ctx context.Context, op string, filter bson.Raw) {
	e := w.entry(nil, op, ReasonUnkeyedWrite, time.Now().UTC())
	e.Filter = bson.Raw(bytes.Clone(filter))
	w.spill(ctx, pending{entry: e, mode: modeUnkeyed})
}

// spill hands an entry to the journal goroutine, or, once Close has drained it, records it
// at once under ctx.
func (w *Writer) spill(ctx context.Context, p pending) {
	w.mu.Lock()
	if w.drained {
		w.mu.Unlock()
		w.record(ctx, []pending{p})
		return
	}
	w.backlog = append(w.backlog, p)
	w.cfg.Metrics.backlog.Set(float64(len(w.backlog)))
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take removes up to n entries from the front of the backlog.
func (w *Writer) take(n int) []pending {
	w.mu.Lock()
	defer w.mu.Unlock()
	n = min(n, len(w.backlog))
	batch := w.backlog[:n:n]
	w.backlog = w.backlog[n:]
	if len(w.backlog) == 0 {
		w.backlog = nil
	}
	w.cfg.Metrics.backlog.Set(float64(len(w.backlog)))
	return batch
}

// putBack returns entries to the front of the backlog, for a later attempt.
func (w *Writer) putBack(batch []pending) {
	w.mu.Lock()
	w.backlog = append(batch, w.backlog...)
	w.cfg.Metrics.backlog.Set(float64(len(w.backlog)))
	w.mu.Unlock()
}

// spillLoop appends the backlog to the journal until Close. When neither the journal nor
// the dead letters take an entry, it waits (100 ms, doubling up to 10 s) and tries again.
func (w *Writer) spillLoop() {
	defer close(w.spillDone)
	const minWait, maxWait = 100 * time.Millisecond, 10 * time.Second
	wait := minWait
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			return
		}
		for {
			batch := w.take(journalBatch)
			if len(batch) == 0 {
				break
			}
			left, _ := w.flush(context.Background(), batch)
			if len(left) == 0 {
				wait = minWait
				continue
			}
			w.putBack(left)
			w.cfg.Log.Error("journal and dead letters both failed; keeping the entries and retrying", "ns", w.cfg.Namespace, "entries", len(left), "retry_in", wait)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-w.stop:
				t.Stop()
				return
			}
			wait = min(wait*2, maxWait)
		}
	}
}

// flush appends batch to the journal; if that fails, it records each keyed entry as a dead
// letter. It returns the entries neither took (unkeyed entries have no dead-letter form) and
// whether the journal took the batch. Each attempt gets Timeout, even if parent has ended:
// the entries would otherwise be lost.
func (w *Writer) flush(parent context.Context, batch []pending) (left []pending, journaled bool) {
	if len(batch) == 0 {
		return nil, true
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), w.cfg.Timeout)
	entries := make([]adapters.JournalEntry, len(batch))
	for i, p := range batch {
		entries[i] = p.entry
	}
	jerr := w.cfg.Journal.Append(ctx, entries...)
	cancel()
	if jerr == nil {
		for _, p := range batch {
			w.count(p.mode, writeJournaled)
			w.cfg.Metrics.journaled.WithLabelValues(p.entry.Reason).Inc()
		}
		return nil, true
	}
	ctx, cancel = context.WithTimeout(context.WithoutCancel(parent), w.cfg.Timeout)
	defer cancel()
	var dead []string
	var dlErr error
	for _, p := range batch {
		if p.entry.Key == nil {
			left = append(left, p)
			continue
		}
		ks := adapters.KeyString(p.entry.Key)
		err := w.cfg.DeadLetters.AddDeadLetter(ctx, catalog.DeadLetter{
			Migration: p.entry.Migration, KeyString: ks, Key: p.entry.Key, Direction: Forward.String(),
			Step:   StepJournal,
			Reason: fmt.Sprintf("%s after %s on %s, and the journal failed: %v", p.entry.Reason, p.entry.Op, p.entry.Namespace, jerr),
		})
		if err != nil {
			dlErr = err
			left = append(left, p)
			continue
		}
		w.e.markDeadLettered(Forward, ks)
		w.count(p.mode, writeDeadLettered)
		dead = append(dead, ks)
	}
	if len(dead) > 0 {
		w.cfg.Log.Error("journal append failed; keys recorded as dead letters", "ns", w.cfg.Namespace,
			"keys", len(dead), "first_keys", dead[:min(len(dead), 10)], "err", jerr)
	}
	if dlErr != nil {
		w.cfg.Log.Error("journal append failed and so did recording dead letters", "ns", w.cfg.Namespace, "err", jerr, "dead_letter_err", dlErr)
	}
	return left, false
}

// record flushes entries once, now; what neither the journal nor the dead letters take is
// lost, and logged at error with its key, or for an unkeyed entry with its filter's hash
// (adapters.FilterHash); the filter itself, user data, is logged only at debug.
func (w *Writer) record(ctx context.Context, entries []pending) (lost int) {
	for len(entries) > 0 {
		n := min(len(entries), journalBatch)
		left, _ := w.flush(ctx, entries[:n])
		entries = entries[n:]
		for _, p := range left {
			lost++
			w.count(p.mode, writeLost)
			args := []any{"ns", p.entry.Namespace, "op", p.entry.Op, "reason", p.entry.Reason}
			if p.entry.Key != nil {
				args = append(args, "key", adapters.KeyString(p.entry.Key))
			} else {
				args = append(args, "filter_hash", adapters.FilterHash(p.entry.Filter))
			}
			w.cfg.Log.Error("journal entry lost: neither the journal nor the dead letters took it", args...)
			if p.entry.Key == nil {
				w.cfg.Log.Debug("filter of the lost unkeyed journal entry (logged at debug only: it is user data)",
					"ns", p.entry.Namespace, "op", p.entry.Op, "filter_hash", adapters.FilterHash(p.entry.Filter), "filter", p.entry.Filter.String())
			}
		}
	}
	return lost
}

// Close stops the Writer: queued keys are converged (or, if ctx ends first, their converges
// are abandoned and the keys journaled), then the journal backlog is flushed, each append
// given Timeout even if ctx has ended. It returns an error if ctx ended or entries were lost.
// Calls after Close still never drop a key: they journal it at once.
func (w *Writer) Close(ctx context.Context) error {
	if !w.closed.CompareAndSwap(false, true) {
		return nil
	}
	var errs []error
	if err := w.pool.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("closing the shadow writer of %s: converges abandoned, keys journaled: %w", w.cfg.Namespace, err))
	}
	close(w.stop)
	<-w.spillDone
	w.mu.Lock()
	rest := w.backlog
	w.backlog, w.drained = nil, true
	w.cfg.Metrics.backlog.Set(0)
	w.mu.Unlock()
	if lost := w.record(ctx, rest); lost > 0 {
		errs = append(errs, fmt.Errorf("closing the shadow writer of %s: %d journal entries lost (logged)", w.cfg.Namespace, lost))
	}
	return errors.Join(errs...)
}
