package migration

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Path is a long-running part of a migration: the watchdog, the journal worker, and once they
// are built the backfill, the change-stream tailers and continuous verification.
//
// Run works until ctx ends, then returns promptly (a stopped path is waited for). An error
// means it failed: it is run again after a backoff. nil before ctx ends means its work is done
// (a backfill that has copied everything): it is not run again until the phase stops and
// restarts it. Run should resume from state it saved, never from memory, since it may be
// stopped and started at any moment.
type Path interface {
	// Name names the path in status and logs; a path the phase table starts is named by its
	// flags.Path ("backfill", say). Names are unique within a Runner.
	Name() string
	Run(ctx context.Context) error
}

// PathState is where a supervised path stands.
type PathState string

// Path states (PathStatus.State).
const (
	// StateStopped: not running: the phase does not want it, or nothing has started it.
	StateStopped PathState = "stopped"
	// StateRunning: its Run is executing.
	StateRunning PathState = "running"
	// StateBackingOff: its Run failed; it runs again at PathStatus.RetryAt.
	StateBackingOff PathState = "backing_off"
	// StateDone: its Run returned nil before it was stopped: its work is done.
	StateDone PathState = "done"
)

// PathStatus is a path's state as its supervisor recorded it.
type PathStatus struct {
	Name  string    `json:"name"`
	State PathState `json:"state"`
	// Since is when the path entered State.
	Since time.Time `json:"since,omitzero"`
	// Wanted says whether the migration's current policy runs the path (a Runner fills it in).
	Wanted bool `json:"wanted"`
	// Shared marks a process-wide path (the journal worker): it serves every migration of the
	// process and runs whatever this migration's phase.
	Shared bool `json:"shared,omitempty"`
	// Restarts counts the runs that followed a failure.
	Restarts int `json:"restarts"`
	// LastError is the error of the last failed run, kept after the path recovers.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// RetryAt is when a backing-off path runs again.
	RetryAt time.Time `json:"retry_at,omitzero"`
}

// Backoff is how a Supervisor waits after a failure: Initial after the first, doubling after
// each failure in a row, at most Max.
type Backoff struct {
	// Initial is the wait after a first failure. Optional; default 500ms.
	Initial time.Duration
	// Max caps the wait. Optional; default 30s. A run that lasted longer than Max before it
	// failed counts as a first failure again.
	Max time.Duration
}

// Backoff defaults.
const (
	DefaultBackoffInitial = 500 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
)

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	b.Max = max(b.Max, b.Initial)
	return b
}

// Supervisor runs one path as Vitess' controller runs a stream: a loop that runs it, and when
// it fails records the error and runs it again after a backoff, until Stop (which cancels and
// waits) or the context given to Start ends. It may be started and stopped any number of
// times; its record (restarts, last error) survives.
type Supervisor struct {
	path    Path
	backoff Backoff
	log     *slog.Logger
	now     func() time.Time

	mu     sync.Mutex
	st     PathStatus
	cancel context.CancelFunc // nil: not started
	done   chan struct{}      // closed when the loop has returned
}

// NewSupervisor returns a stopped supervisor of p. log receives each failure (nil: discard).
func NewSupervisor(p Path, b Backoff, log *slog.Logger) *Supervisor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Supervisor{path: p, backoff: b.withDefaults(), log: log.With("path", p.Name()), now: time.Now}
	s.st = PathStatus{Name: p.Name(), State: StateStopped}
	return s
}

// Name is the path's name.
func (s *Supervisor) Name() string { return s.st.Name }

// Start runs the path under supervision until Stop or until ctx ends. It does nothing when the
// supervisor is started already, even if the path is done.
func (s *Supervisor) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	s.cancel, s.done = cancel, make(chan struct{})
	go s.loop(ctx, s.done)
}

// Stop cancels the path and waits until its Run has returned. It does nothing when the
// supervisor is not started.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Status returns the path's recorded state.
func (s *Supervisor) Status() PathStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

func (s *Supervisor) set(state PathState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.State, s.st.Since, s.st.RetryAt = state, s.now(), time.Time{}
}

func (s *Supervisor) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	delay := s.backoff.Initial
	for {
		s.set(StateRunning)
		started := s.now()
		err := s.path.Run(ctx)
		if ctx.Err() != nil {
			s.set(StateStopped)
			return
		}
		if err == nil {
			s.set(StateDone)
			return
		}
		if s.now().Sub(started) > s.backoff.Max {
			delay = s.backoff.Initial
		}
		at := s.now()
		s.mu.Lock()
		s.st.State, s.st.Since, s.st.RetryAt = StateBackingOff, at, at.Add(delay)
		s.st.LastError, s.st.LastErrorAt = err.Error(), at
		s.mu.Unlock()
		s.log.Warn("path failed; running it again after a delay", "err", err, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			s.set(StateStopped)
			return
		case <-t.C:
		}
		delay = min(2*delay, s.backoff.Max)
		s.mu.Lock()
		s.st.Restarts++
		s.mu.Unlock()
	}
}
