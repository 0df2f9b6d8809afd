// Package shadow moves data between the old and the new store. Its core is converge(K), the
// one primitive of docs/architecture.md: read the source document by key (its latest state); if it
// exists, write its transform to the target, else delete the key from the target; write nothing
// when the target already holds exactly that. Because converge always reads the latest state it
// is idempotent and may run late, twice or out of order.
//
// Around it: Pool runs converges on bounded per-key queues; Writer is the proxy's write path
// (Async in the shadow phase, Sync before the reply in the dual and cutover phases, with the
// journal and then the dead letters for what it cannot converge); Comparer checks the
// documents the proxy read from old against new (shadow reads); Engine.ReadNew serves reads
// from new in the old shape.
package shadow

import (
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

// Direction says which store is the source of a converge.
type Direction int

const (
	// Forward converges old → new through the forward transform.
	Forward Direction = iota
	// Reverse converges new → old through the reverse transform (keeps rollback possible).
	Reverse
)

func (d Direction) String() string {
	if d == Reverse {
		return "reverse"
	}
	return "forward"
}

// Action is what a converge did.
type Action int

const (
	// Unchanged: the target already held the transform of the source (or both lacked the key).
	Unchanged Action = iota
	// Upserted: the target's document was written.
	Upserted
	// Deleted: the source lacked the key, so the target's document was deleted.
	Deleted
	// DeadLettered: the document could not be transformed or written; it was recorded as a dead
	// letter and the target left as it was.
	DeadLettered
	// Echo: the source held exactly what this engine's other direction last wrote into it, so
	// the change was that write coming back; the target was left as it was (see echoGuard).
	Echo
)

var actionNames = [...]string{"unchanged", "upserted", "deleted", "dead_lettered", "echo"}

// Actions lists every Action, for the metrics that count them by name.
var Actions = []Action{Unchanged, Upserted, Deleted, DeadLettered, Echo}

func (a Action) String() string { return actionNames[a] }

// Result is the outcome of converging one key.
type Result struct {
	Key    adapters.Key
	Action Action
	// Reason says why a key was dead-lettered.
	Reason string
}

// Transform maps a document of one store to the shape of the other (transform.Spec's Forward
// or Reverse).
type Transform func(bson.D) (bson.D, error)

// DeadLetters is where documents that cannot be converged go (the catalog).
type DeadLetters interface {
	AddDeadLetter(ctx context.Context, d catalog.DeadLetter) error
	ResolveDeadLetter(ctx context.Context, migration, direction, keyString string) error
	DeadLetters(ctx context.Context, migration string, f catalog.DeadLetterFilter) ([]catalog.DeadLetter, error)
}

// Config wires an Engine.
type Config struct {
	// Migration names the migration in dead letters. Required.
	Migration string
	// SpecVersion is recorded with dead letters, so a fixed spec retries them. Required.
	SpecVersion string
	// Old and New are the two stores. Required.
	Old, New adapters.Store
	// Forward is the transform old → new. Required.
	Forward Transform
	// Reverse is the transform new → old. Optional; Reverse converges fail without it.
	Reverse Transform
	// DeadLetters records what cannot be converged. Required.
	DeadLetters DeadLetters
	// Metrics receives counts and latencies. Optional; default: unregistered collectors.
	Metrics *Metrics
	// Log is the logger. Optional; default slog.Default().
	Log *slog.Logger
	// Stripes is the number of per-key lock stripes (and worker queues of a Pool). Optional;
	// default 64.
	Stripes int
	// EchoMemory is how many keys per direction the engine remembers its last write of, to
	// recognize that write when it comes back on the other store's change stream (Action
	// Echo). Optional; default DefaultEchoMemory; negative turns the guard off.
	EchoMemory int
}

// Engine converges keys between two stores. It serializes work on one key within the process:
// a key hashes onto one of a fixed set of lock stripes, which both Converge and ConvergeBatch
// hold while they read and write.
type Engine struct {
	cfg     Config
	stripes []sync.Mutex
	echo    *echoGuard

	mu           sync.Mutex
	deadLettered map[string]struct{} // dead-letter ids (direction/key) this engine knows exist
}

// ErrNoReverse means a reverse converge was asked of an engine without a reverse transform.
var ErrNoReverse = errors.New("no reverse transform configured")

// NewEngine checks cfg and returns an engine.
func NewEngine(cfg Config) (*Engine, error) {
	switch {
	case cfg.Migration == "":
		return nil, errors.New("shadow: Config.Migration is required")
	case cfg.SpecVersion == "":
		return nil, errors.New("shadow: Config.SpecVersion is required")
	case cfg.Old == nil || cfg.New == nil:
		return nil, errors.New("shadow: Config.Old and Config.New are required")
	case cfg.Forward == nil:
		return nil, errors.New("shadow: Config.Forward is required")
	case cfg.DeadLetters == nil:
		return nil, errors.New("shadow: Config.DeadLetters is required")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Stripes <= 0 {
		cfg.Stripes = 64
	}
	return &Engine{cfg: cfg, stripes: make([]sync.Mutex, cfg.Stripes), echo: newEchoGuard(cfg.EchoMemory),
		deadLettered: map[string]struct{}{}}, nil
}

func (e *Engine) route(dir Direction) (src, dst adapters.Store, fn Transform, err error) {
	if dir == Reverse {
		if e.cfg.Reverse == nil {
			return nil, nil, nil, ErrNoReverse
		}
		return e.cfg.New, e.cfg.Old, e.cfg.Reverse, nil
	}
	return e.cfg.Old, e.cfg.New, e.cfg.Forward, nil
}

// Converge brings the target's document for key in line with the source's. A document that
// cannot be transformed or written becomes a dead letter (Action DeadLettered, nil error); an
// error is returned only for failures worth retrying (a store unreachable, say).
func (e *Engine) Converge(ctx context.Context, key adapters.Key, dir Direction) (Result, error) {
	ks := adapters.KeyString(key)
	stripe := &e.stripes[stripeOf(ks, len(e.stripes))]
	stripe.Lock()
	defer stripe.Unlock()
	start := time.Now()
	res, err := e.convergeLocked(ctx, key, ks, dir)
	e.cfg.Metrics.observe(dir, res.Action, err, time.Since(start))
	return res, err
}

func (e *Engine) convergeLocked(ctx context.Context, key adapters.Key, ks string, dir Direction) (Result, error) {
	res := Result{Key: key}
	src, dst, fn, err := e.route(dir)
	if err != nil {
		return res, err
	}
	doc, err := src.Get(ctx, key)
	if err != nil && !errors.Is(err, adapters.ErrNotFound) {
		return res, fmt.Errorf("converge %s %s: reading source: %w", dir, ks, err)
	}
	if e.echo.echo(dir, ks, doc) {
		res.Action = Echo
		return res, nil
	}
	var want bson.D
	if doc != nil {
		out, terr := fn(doc)
		if terr != nil {
			return e.deadLetter(ctx, res, ks, dir, stepName(terr), terr)
		}
		if want, err = dst.Normalize(out); err != nil {
			return e.deadLetter(ctx, res, ks, dir, "write", err)
		}
	}
	have, err := dst.Get(ctx, key)
	if err != nil && !errors.Is(err, adapters.ErrNotFound) {
		return res, fmt.Errorf("converge %s %s: reading target: %w", dir, ks, err)
	}
	switch {
	case want == nil && have == nil, want != nil && have != nil && transform.Equal(want, have):
		res.Action = Unchanged
	case want == nil:
		if err := dst.Delete(ctx, key); err != nil {
			return res, fmt.Errorf("converge %s %s: deleting from target: %w", dir, ks, err)
		}
		e.echo.recorded(dir, ks, nil)
		res.Action = Deleted
	default:
		if err := dst.Upsert(ctx, want); err != nil {
			if permanent(err) {
				return e.deadLetter(ctx, res, ks, dir, "write", err)
			}
			return res, fmt.Errorf("converge %s %s: writing target: %w", dir, ks, err)
		}
		e.echo.recorded(dir, ks, want)
		res.Action = Upserted
	}
	return res, e.resolve(ctx, ks, dir)
}

// permanent reports whether a write error will recur on every retry of the same document.
func permanent(err error) bool {
	return errors.Is(err, adapters.ErrItemTooLarge) || errors.Is(err, adapters.ErrUnsupportedValue) || errors.Is(err, adapters.ErrKeyMissing)
}

// stepName names the failing transform step for a dead letter, e.g. "forward[3] convert age".
func stepName(err error) string {
	var se *transform.StepError
	if !errors.As(err, &se) {
		return "transform"
	}
	if se.Step < 0 {
		return se.Direction + " key " + se.Path
	}
	return fmt.Sprintf("%s[%d] %s %s", se.Direction, se.Step, se.Kind, se.Path)
}

// deadLetter records a key that cannot be converged. Failing to record it is an error: a
// document is never dropped silently.
func (e *Engine) deadLetter(ctx context.Context, res Result, ks string, dir Direction, step string, cause error) (Result, error) {
	res.Action = DeadLettered
	res.Reason = cause.Error()
	err := e.cfg.DeadLetters.AddDeadLetter(ctx, catalog.DeadLetter{
		Migration: e.cfg.Migration, KeyString: ks, Key: res.Key, Direction: dir.String(),
		Step: step, Reason: cause.Error(), SpecVersion: e.cfg.SpecVersion,
	})
	if err != nil {
		return res, fmt.Errorf("converge %s %s failed (%v) and could not be dead-lettered: %w", dir, ks, cause, err)
	}
	e.markDeadLettered(dir, ks)
	e.cfg.Log.Warn("document dead-lettered", "migration", e.cfg.Migration, "direction", dir.String(), "key", ks, "step", step, "reason", cause.Error())
	return res, nil
}

// markDeadLettered notes that a dead letter exists for the key, so that the next converge
// that succeeds resolves it.
func (e *Engine) markDeadLettered(dir Direction, ks string) {
	e.mu.Lock()
	e.deadLettered[dir.String()+"/"+ks] = struct{}{}
	e.mu.Unlock()
}

// resolve removes a key's dead letter after it converged, if this engine knows of one.
func (e *Engine) resolve(ctx context.Context, ks string, dir Direction) error {
	id := dir.String() + "/" + ks
	e.mu.Lock()
	_, known := e.deadLettered[id]
	e.mu.Unlock()
	if !known {
		return nil
	}
	if err := e.cfg.DeadLetters.ResolveDeadLetter(ctx, e.cfg.Migration, dir.String(), ks); err != nil {
		return err
	}
	e.mu.Lock()
	delete(e.deadLettered, id)
	e.mu.Unlock()
	return nil
}

// RetryDeadLetters converges again every dead letter recorded under another spec version than
// the engine's (the spec has been fixed since) and returns the results; those that converge are
// resolved, those that still fail are recorded under the current version.
func (e *Engine) RetryDeadLetters(ctx context.Context) ([]Result, error) {
	return e.RetryDeadLettersMatching(ctx, catalog.DeadLetterFilter{NotSpecVersion: e.cfg.SpecVersion})
}

// RetryDeadLettersMatching converges again the dead letters f selects (its Migration is the
// engine's) and returns the results, as RetryDeadLetters does. A context that ends stops it
// between two keys.
func (e *Engine) RetryDeadLettersMatching(ctx context.Context, f catalog.DeadLetterFilter) ([]Result, error) {
	dls, err := e.cfg.DeadLetters.DeadLetters(ctx, e.cfg.Migration, f)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, d := range dls {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		dir := Forward
		if d.Direction == Reverse.String() {
			dir = Reverse
		}
		e.mu.Lock()
		e.deadLettered[d.Direction+"/"+d.KeyString] = struct{}{}
		e.mu.Unlock()
		res, err := e.Converge(ctx, d.Key, dir)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

// stripeOf hashes a key string (FNV-1a) onto n stripes.
func stripeOf(ks string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(ks); i++ {
		h ^= uint32(ks[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}
