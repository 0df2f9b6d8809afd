package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/shadow"
)

// Components under which tailers report their lag (catalog.ReportLag); the cutover gate's
// change_lag reads every fresh one.
const (
	ComponentForward = "cdc-forward"
	ComponentReverse = "cdc-reverse"
)

// Path names of the tailers, as the phase table names them (flags.PathForwardCDC and
// flags.PathReverseCDC; cdc does not import flags).
const (
	PathForward = "forward-cdc"
	PathReverse = "reverse-cdc"
)

// Converger converges keys in batches: *shadow.Engine.
type Converger interface {
	ConvergeBatch(ctx context.Context, keys []adapters.Key, dir shadow.Direction) ([]shadow.Result, error)
}

// Checkpoints is where a tailer keeps its position and state: *catalog.Catalog.
type Checkpoints interface {
	CDCStream(ctx context.Context, migration, path string) (catalog.CDCStream, error)
	StartCDCStream(ctx context.Context, migration, path, source string, pos Position) (catalog.CDCStream, bool, error)
	SaveCDCPosition(ctx context.Context, migration, path string, pos Position, at time.Time, applied int64) error
	SetCDCState(ctx context.Context, migration, path, state, detail string) error
}

// KeyPublisher hands changed keys to the journal: *Publisher. Publish returns once every key
// of b is acknowledged.
type KeyPublisher interface {
	Publish(ctx context.Context, b Batch) error
}

var _ KeyPublisher = (*Publisher)(nil)

// TailerConfig wires a Tailer.
type TailerConfig struct {
	// Migration names the migration. Required.
	Migration string
	// Direction is shadow.Forward (the old store's changes into new) or shadow.Reverse (the
	// new store's into old). Required in the sense that it chooses the path: forward-cdc or
	// reverse-cdc.
	Direction shadow.Direction
	// Source is the stream of changed keys. Required.
	Source Source
	// Engine converges the keys. Required unless Publisher is set.
	Engine Converger
	// Publisher, when set, hands each batch's keys to the Kafka journal instead of converging
	// them here: the journal's consumer group (JournalWorker, in every process) converges them.
	// The position is saved once the brokers acknowledged the publish. Forward only (a
	// JournalWorker converges old → new). Optional; default: the tailer converges.
	Publisher KeyPublisher
	// Checkpoints keeps the position and the state. Required.
	Checkpoints Checkpoints
	// Leases elects one tailer per path among processes (the catalog). Optional; default: no
	// election, and the caller must run one tailer per path.
	Leases Leases
	// Lease is how long a claim lasts without renewal: a crashed holder's path is taken over
	// after it. Optional; default 15s (used only with Leases).
	Lease time.Duration
	// LagReporter receives the lag every LagEvery (component cdc-forward or cdc-reverse).
	// Optional; default: the lag is only a metric.
	LagReporter LagReporter
	// Interplay tells a forward tailer which keys the backfill will still copy. Optional;
	// default: every key is converged at once (always correct, since the backfill re-checks its
	// batches). Ignored in reverse.
	Interplay Interplay
	// Queue is how many batches may wait between the source and the applier. Optional;
	// default 8.
	Queue int
	// MaxConverge is the most keys one ConvergeBatch call takes. Optional; default 500.
	MaxConverge int
	// LagEvery is how often the lag is reported. Optional; default 2s.
	LagEvery time.Duration
	// DeferPoll is how often a key inside a batch being copied is looked at again, and
	// DeferMax how long the tailer waits for that batch before converging the key anyway.
	// Optional; defaults 100ms and 30s.
	DeferPoll, DeferMax time.Duration
	// UntilCaughtUp makes Run return nil once it has applied a batch that says the source is
	// caught up, with nothing waiting: a drain (the reverse stream after a rollback). A path
	// that never applied a change has nothing to drain: Run returns nil at once. Optional.
	UntilCaughtUp bool
	// Name is the path's name in the runtime. Optional; default the path ("forward-cdc",
	// "reverse-cdc"), which also names the checkpoint whatever Name says.
	Name string
	// ResyncCommand is the command an operator runs to recover from history lost (it names the
	// migration); it goes into the state's detail and the error. Optional; default
	// "tandem cdc resync --spec SPEC --direction forward|reverse".
	ResyncCommand string
	// Metrics receives counts, the lag and the stop states. Optional; default: unregistered.
	Metrics *TailerMetrics
	// Logger is the logger. Optional; default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Optional; default time.Now.
	Now func() time.Time
}

// Tailer follows one Source and converges what it reports in one direction, with the
// position saved in the catalog after each batch lands: a reader (Source.Run) fills a bounded
// queue, one applier empties it, and whichever fails first stops the other (Vitess' vplayer).
// It is a migration path (Name, Run): stopped and started at any moment, it resumes from the
// catalog, never from memory. Delivery is at least once; converge's idempotence makes a change
// converged twice harmless.
//
// One Tailer value must run at most once at a time. With Leases, tailers of one path in any
// number of processes elect one holder through a lease in the catalog; the others wait, and one
// of them takes over from the checkpoint once the holder's lease expires (it crashed) or is
// released (it stopped). A holder whose lease was taken over stops before its next checkpoint
// (the fence). Without Leases, run one tailer per path: two would converge the same changes
// twice (harmless) and race on the checkpoint.
type Tailer struct {
	cfg  TailerConfig
	path string // names the checkpoint and the lease
	name string // names the runtime path
	comp string
	log  *slog.Logger
	m    *TailerMetrics

	mu        sync.Mutex
	lastAt    time.Time // At of the newest change applied
	caughtUp  bool      // the last batch applied said the source was caught up
	inFlight  time.Time // At of the oldest change of the batch being applied; zero if none
	queued    func() int
	stopState string
	hold      *leaseHold // the lease held while Run runs, with Leases
}

// NewTailer checks cfg and returns a tailer; Run starts it.
func NewTailer(cfg TailerConfig) (*Tailer, error) {
	switch {
	case cfg.Migration == "":
		return nil, errors.New("cdc: TailerConfig.Migration is required")
	case cfg.Source == nil:
		return nil, errors.New("cdc: TailerConfig.Source is required")
	case cfg.Engine == nil && cfg.Publisher == nil:
		return nil, errors.New("cdc: TailerConfig.Engine is required")
	case cfg.Publisher != nil && cfg.Direction != shadow.Forward:
		return nil, errors.New("cdc: TailerConfig.Publisher: only the forward path publishes (journal workers converge old → new)")
	case cfg.Checkpoints == nil:
		return nil, errors.New("cdc: TailerConfig.Checkpoints is required")
	case cfg.Direction != shadow.Forward && cfg.Direction != shadow.Reverse:
		return nil, fmt.Errorf("cdc: TailerConfig.Direction %d is neither forward nor reverse", cfg.Direction)
	case cfg.Queue < 0 || cfg.MaxConverge < 0 || cfg.LagEvery < 0 || cfg.DeferPoll < 0 || cfg.DeferMax < 0 || cfg.Lease < 0:
		return nil, errors.New("cdc: TailerConfig.Queue, MaxConverge, LagEvery, DeferPoll, DeferMax and Lease must not be negative")
	case cfg.Leases != nil && cfg.Lease > 0 && cfg.Lease < 30*time.Millisecond:
		return nil, fmt.Errorf("cdc: TailerConfig.Lease %s is too short to renew", cfg.Lease)
	}
	if cfg.Lease == 0 {
		cfg.Lease = 15 * time.Second
	}
	if cfg.Queue == 0 {
		cfg.Queue = 8
	}
	if cfg.MaxConverge == 0 {
		cfg.MaxConverge = 500
	}
	if cfg.LagEvery == 0 {
		cfg.LagEvery = 2 * time.Second
	}
	if cfg.DeferPoll == 0 {
		cfg.DeferPoll = 100 * time.Millisecond
	}
	if cfg.DeferMax == 0 {
		cfg.DeferMax = 30 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewTailerMetrics(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &Tailer{cfg: cfg, path: PathForward, comp: ComponentForward, m: cfg.Metrics}
	if cfg.Direction == shadow.Reverse {
		t.path, t.comp = PathReverse, ComponentReverse
		t.cfg.Interplay = nil
	}
	t.name = t.path
	if cfg.Name != "" {
		t.name = cfg.Name
	}
	if t.cfg.ResyncCommand == "" {
		t.cfg.ResyncCommand = fmt.Sprintf("tandem cdc resync --spec SPEC --direction %s", cfg.Direction)
	}
	t.log = cfg.Logger.With("migration", cfg.Migration, "path", t.path, "source", cfg.Source.Name())
	// The alert series exist from the start: stopped in no state (the catalog's state, if the
	// path stopped before, is set when it runs), no failure yet. The lag appears when the path
	// runs, since only then is it known.
	t.setStopped("")
	t.m.failures.WithLabelValues(cfg.Migration, cfg.Direction.String())
	return t, nil
}

// Name is the path's name: "forward-cdc" or "reverse-cdc" unless TailerConfig.Name says
// otherwise.
func (t *Tailer) Name() string { return t.name }

// Prepare records the source's current position as the path's start, unless the path has a
// checkpoint already. Call it before the backfill starts copying (tandem run does, before any
// path runs), so that every change after the backfill's reads is in the stream.
func (t *Tailer) Prepare(ctx context.Context) (catalog.CDCStream, error) {
	s, err := t.cfg.Checkpoints.CDCStream(ctx, t.cfg.Migration, t.path)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, catalog.ErrNotFound) {
		return catalog.CDCStream{}, fmt.Errorf("%s: %w", t.path, err)
	}
	pos, err := t.cfg.Source.Start(ctx)
	if err != nil {
		return catalog.CDCStream{}, fmt.Errorf("%s: taking the start position of %s: %w", t.path, t.cfg.Source.Name(), err)
	}
	s, mine, err := t.cfg.Checkpoints.StartCDCStream(ctx, t.cfg.Migration, t.path, t.cfg.Source.Name(), pos)
	if err != nil {
		return catalog.CDCStream{}, fmt.Errorf("%s: %w", t.path, err)
	}
	if mine {
		t.log.Info("change capture starts here", "position", pos.String())
	}
	return s, nil
}

// Run follows the source from the saved position until ctx ends (then it returns nil) or
// something fails. A path whose record says invalidated, history lost or bad event returns
// that error at once, without reading the source, until an operator resyncs it.
func (t *Tailer) Run(parent context.Context) error {
	if t.cfg.Leases != nil {
		// The lease first: the checkpoint is read once this tailer alone moves it.
		h, err := t.acquire(parent)
		if err != nil {
			return t.ctxOr(parent, err)
		}
		defer t.release(h)
		t.mu.Lock()
		t.hold = h
		t.mu.Unlock()
		renewCtx, stopRenew := context.WithCancel(parent)
		renewDone := make(chan struct{})
		go func() {
			defer close(renewDone)
			t.renewLoop(renewCtx, h)
		}()
		defer func() {
			stopRenew()
			<-renewDone
			t.mu.Lock()
			t.hold = nil
			t.mu.Unlock()
		}()
	}
	s, err := t.Prepare(parent)
	if err != nil {
		return t.ctxOr(parent, err)
	}
	if s.State != catalog.CDCRunning {
		t.setStopped(s.State)
		return t.stoppedError(s.State, s.Detail)
	}
	t.setStopped("")
	if t.cfg.UntilCaughtUp && s.Applied == 0 {
		return nil // never ran: nothing to drain
	}
	t.mu.Lock()
	t.lastAt, t.caughtUp = s.At, false
	t.mu.Unlock()

	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	queue := make(chan Batch, t.cfg.Queue)
	t.mu.Lock()
	t.queued = func() int { return len(queue) }
	t.mu.Unlock()
	readErr := make(chan error, 1)
	readDone := make(chan struct{})
	go func() {
		readErr <- t.cfg.Source.Run(ctx, s.Position, queue)
		close(readDone) // the applier applies what was queued, then stops
	}()
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		t.reportLoop(ctx)
	}()
	applyErr := t.apply(ctx, queue, readDone)
	cancel() // whichever side ends first stops the other
	rerr := <-readErr
	<-lagDone
	if parent.Err() != nil || errors.Is(applyErr, errDrained) {
		return nil // stopped, or drained: whatever the other side said is the cancellation
	}
	err = t.firstError(applyErr, rerr)
	if err == nil || errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%s: %s stopped without an error", t.path, t.cfg.Source.Name())
	}
	return t.stop(err)
}

// firstError prefers the error that is not the cancellation the other side caused.
func (t *Tailer) firstError(applyErr, readErr error) error {
	for _, err := range []error{readErr, applyErr} {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	if applyErr != nil {
		return applyErr
	}
	return readErr
}

// apply converges the queue's batches in order, saving the position after each, until ctx ends,
// a converge or a save fails, or the reader stopped (readDone) and the queue is empty: the
// batches a source sent before its error are applied, so that the checkpoint stands right
// before the event that stopped it.
func (t *Tailer) apply(ctx context.Context, queue <-chan Batch, readDone <-chan struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-queue:
			if err := t.applyBatch(ctx, b); err != nil {
				return err
			}
			if t.cfg.UntilCaughtUp && b.CaughtUp && len(queue) == 0 {
				t.log.Info("drained: caught up with the stream")
				return errDrained
			}
		case <-readDone:
			for {
				select {
				case b := <-queue:
					if err := t.applyBatch(ctx, b); err != nil {
						return err
					}
				default:
					return nil
				}
			}
		}
	}
}

func (t *Tailer) applyBatch(ctx context.Context, b Batch) error {
	if len(b.Changes) > 0 {
		t.mu.Lock()
		t.inFlight = b.Changes[0].At
		t.mu.Unlock()
	}
	applied, err := t.converge(ctx, b.Changes)
	if err != nil {
		t.m.failures.WithLabelValues(t.cfg.Migration, t.cfg.Direction.String()).Inc()
		return err
	}
	if b.Position != nil {
		t.mu.Lock()
		h := t.hold
		t.mu.Unlock()
		if h != nil {
			if err := t.fence(ctx, h); err != nil {
				return err
			}
		}
		var at time.Time // an empty batch's At is the source's clock, not a change's
		if len(b.Changes) > 0 {
			at = b.At
		}
		if err := t.cfg.Checkpoints.SaveCDCPosition(ctx, t.cfg.Migration, t.path, b.Position, at, applied); err != nil {
			return err
		}
	}
	t.mu.Lock()
	t.inFlight = time.Time{}
	if len(b.Changes) > 0 && b.At.After(t.lastAt) {
		t.lastAt = b.At
	}
	t.caughtUp = b.CaughtUp
	t.mu.Unlock()
	t.m.lag.WithLabelValues(t.cfg.Migration, t.cfg.Direction.String()).Set(t.Lag().Seconds())
	return nil
}

// converge converges the changes' keys (or publishes them, with a Publisher): those the
// backfill will copy are left to it, those in a batch being copied after that batch lands, the
// others at once. It returns how many changes it handled.
func (t *Tailer) converge(ctx context.Context, changes []Change) (int64, error) {
	if len(changes) == 0 {
		return 0, nil
	}
	dir := t.cfg.Direction.String()
	for _, c := range changes {
		t.m.changes.WithLabelValues(t.cfg.Migration, dir, string(c.Op)).Inc()
	}
	now, later, err := t.sort(ctx, changes)
	if err != nil {
		return 0, err
	}
	if err := t.deliver(ctx, now); err != nil {
		return 0, err
	}
	if len(later) > 0 {
		if err := t.convergeAfterCopy(ctx, later); err != nil {
			return 0, err
		}
	}
	return int64(len(changes)), nil
}

// sort splits the changes by the backfill interplay rule into those to converge now and those
// inside a batch being copied; keys the copy will read later are dropped (and counted).
func (t *Tailer) sort(ctx context.Context, changes []Change) (now, later []Change, err error) {
	if t.cfg.Interplay == nil {
		return changes, nil, nil
	}
	disp, err := t.cfg.Interplay.Classify(ctx, changes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: asking the backfill about %d keys: %w", t.path, len(changes), err)
	}
	for i, c := range changes {
		switch disp[i] {
		case LeaveToCopy:
			t.m.interplay.WithLabelValues(t.cfg.Migration, "left_to_copy").Inc()
		case AfterBatch:
			t.m.interplay.WithLabelValues(t.cfg.Migration, "after_batch").Inc()
			later = append(later, c)
		default:
			now = append(now, c)
		}
	}
	return now, later, nil
}

// convergeAfterCopy waits until no key of changes is in a batch being copied (polling the
// interplay), at most DeferMax, then converges them. The wait is bounded because the backfill's
// re-check makes converging early correct too; waiting only spares a converge the batch would
// overwrite and re-check.
func (t *Tailer) convergeAfterCopy(ctx context.Context, changes []Change) error {
	asked := make([]Change, len(changes))
	for i, c := range changes {
		asked[i] = Change{Key: c.Key, Op: OpUpdate}
	}
	deadline := t.cfg.Now().Add(t.cfg.DeferMax)
	for t.cfg.Now().Before(deadline) {
		disp, err := t.cfg.Interplay.Classify(ctx, asked)
		if err != nil {
			return fmt.Errorf("%s: asking the backfill about %d keys: %w", t.path, len(changes), err)
		}
		waiting := false
		for _, d := range disp {
			waiting = waiting || d == AfterBatch
		}
		if !waiting {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(t.cfg.DeferPoll):
		}
	}
	return t.deliver(ctx, changes)
}

// deliver converges the changes' keys, or, with a Publisher, publishes them and returns once
// the journal acknowledged them (counted as result "published").
func (t *Tailer) deliver(ctx context.Context, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	dir := t.cfg.Direction.String()
	if t.cfg.Publisher != nil {
		if err := t.cfg.Publisher.Publish(ctx, Batch{Changes: changes}); err != nil {
			return fmt.Errorf("%s: %w", t.path, err)
		}
		t.m.results.WithLabelValues(t.cfg.Migration, dir, ResultPublished).Add(float64(len(changes)))
		return nil
	}
	keys := make([]adapters.Key, len(changes))
	for i, c := range changes {
		keys[i] = c.Key
	}
	for len(keys) > 0 {
		n := min(len(keys), t.cfg.MaxConverge)
		results, err := t.cfg.Engine.ConvergeBatch(ctx, keys[:n], t.cfg.Direction)
		if err != nil {
			return fmt.Errorf("%s: converging %d keys %s: %w", t.path, n, dir, err)
		}
		for _, r := range results {
			t.m.results.WithLabelValues(t.cfg.Migration, dir, r.Action.String()).Inc()
		}
		keys = keys[n:]
	}
	return nil
}

// Lag is how far the tailer is behind: 0 when the last batch it applied was the source's
// newest and nothing waits, else now minus the newest applied change's time (or the oldest
// change of a batch being applied, before any was).
func (t *Tailer) Lag() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	waiting := t.queued != nil && t.queued() > 0
	switch {
	case !t.inFlight.IsZero() && t.lastAt.IsZero():
		return max(t.cfg.Now().Sub(t.inFlight), 0)
	case t.caughtUp && t.inFlight.IsZero() && !waiting:
		return 0
	case t.lastAt.IsZero():
		return 0 // nothing applied and nothing known to wait
	}
	return max(t.cfg.Now().Sub(t.lastAt), 0)
}

func (t *Tailer) reportLoop(ctx context.Context) {
	tick := time.NewTicker(t.cfg.LagEvery)
	defer tick.Stop()
	for {
		t.report(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (t *Tailer) report(ctx context.Context) {
	lag := t.Lag()
	t.m.lag.WithLabelValues(t.cfg.Migration, t.cfg.Direction.String()).Set(lag.Seconds())
	if t.cfg.LagReporter == nil {
		return
	}
	if err := t.cfg.LagReporter.ReportLag(ctx, t.cfg.Migration, t.comp, lag); err != nil && ctx.Err() == nil {
		t.log.Warn("reporting change-capture lag", "lag", lag, "err", err)
	}
}

// stop turns a permanent source error into the path's saved state (with the way out), the
// alert metric and a log line; other errors are returned for the supervisor to retry.
func (t *Tailer) stop(err error) error {
	state := ""
	switch {
	case errors.Is(err, ErrHistoryLost):
		state = catalog.CDCHistoryLost
	case errors.Is(err, ErrInvalidated):
		state = catalog.CDCInvalidated
	case errors.Is(err, ErrBadEvent):
		state = catalog.CDCBadEvent
	default:
		return err
	}
	detail := t.detail(state, err)
	t.log.Error("change capture stopped", "state", state, "detail", detail)
	t.setStopped(state)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := t.cfg.Checkpoints.SetCDCState(ctx, t.cfg.Migration, t.path, state, detail); serr != nil {
		t.log.Error("recording the change-capture state", "state", state, "err", serr)
	}
	return t.stoppedError(state, detail)
}

func (t *Tailer) detail(state string, err error) string {
	switch state {
	case catalog.CDCHistoryLost:
		return fmt.Sprintf("%v; the changes since the checkpoint are gone: recover with a new copy from a fresh position: %s",
			err, t.cfg.ResyncCommand)
	case catalog.CDCInvalidated:
		return fmt.Sprintf("%v; the path is stopped: recreate or restore the collection, then resync: %s", err, t.cfg.ResyncCommand)
	default:
		return fmt.Sprintf("%v; the checkpoint stays before the event: fix the source document, then resync: %s", err, t.cfg.ResyncCommand)
	}
}

func (t *Tailer) stoppedError(state, detail string) error {
	var base error
	switch state {
	case catalog.CDCHistoryLost:
		base = ErrHistoryLost
	case catalog.CDCInvalidated:
		base = ErrInvalidated
	case catalog.CDCBadEvent:
		base = ErrBadEvent
	default:
		return fmt.Errorf("%s of %s: unknown state %q in the catalog", t.path, t.cfg.Migration, state)
	}
	return fmt.Errorf("%s of %s stopped (%s): %s: %w", t.path, t.cfg.Migration, state, detail, base)
}

// setStopped sets the alert gauge: 1 for the state the path stopped in, 0 for the others.
func (t *Tailer) setStopped(state string) {
	t.mu.Lock()
	t.stopState = state
	t.mu.Unlock()
	for _, s := range []string{catalog.CDCHistoryLost, catalog.CDCInvalidated, catalog.CDCBadEvent} {
		v := 0.0
		if s == state {
			v = 1
		}
		t.m.stopped.WithLabelValues(t.cfg.Migration, t.cfg.Direction.String(), s).Set(v)
	}
}

// State is the state the path last stopped in ("" while it runs or before it ran).
func (t *Tailer) State() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopState
}

func (t *Tailer) ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ResultPublished is the result label of tandem_cdc_converged_total for keys a tailer handed
// to the journal (TailerConfig.Publisher) rather than converged.
const ResultPublished = "published"

// errDrained ends an UntilCaughtUp run.
var errDrained = errors.New("drained")

// ErrBadEvent means a source delivered an event that cannot be converged (no usable key): a
// permanent error like ErrHistoryLost, since running again from the same position meets the
// same event. The checkpoint stays before it.
var ErrBadEvent = errors.New("change event cannot be converged")
