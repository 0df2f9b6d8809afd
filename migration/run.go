package migration

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tandemdb/tandem/flags"
)

// Status is what a Runner reports about itself (the admin API's GET
// /v1/migrations/{name}/status). It is read from memory: it does no I/O.
type Status struct {
	Migration   string `json:"migration"`
	SpecVersion string `json:"spec_version"`
	// Namespace is the old collection, "database.collection"; Target names the new store.
	Namespace string `json:"namespace"`
	Target    string `json:"target"`
	// Running says whether Run is supervising the paths.
	Running bool `json:"running"`
	// Flags are the values Run last evaluated, and Policy what they mean; before the first
	// evaluation they are the defaults.
	Flags  flags.Values `json:"flags"`
	Policy flags.Policy `json:"policy"`
	// PhaseSince is when Run took in the current phase.
	PhaseSince time.Time `json:"phase_since,omitzero"`
	// Paths are the registered paths, then the process-wide ones (Share).
	Paths []PathStatus `json:"paths"`
}

// runsPath is the default choice of the phases a path runs in: those whose policy lists it.
func runsPath(p flags.Path) func(flags.Policy) bool {
	return func(pol flags.Policy) bool { return pol.Runs(p) }
}

// AddPath registers a path that Run starts whenever wantedIn(policy) holds and stops when it
// no longer does; nil wantedIn means "in the phases whose policy lists the path's name" (see
// flags.PolicyFor), the usual choice for a path named after a flags.Path. Register paths
// before Run: a path added while Run runs starts at the next flag change. The name must be
// new to the runner.
func (r *Runner) AddPath(p Path, wantedIn func(flags.Policy) bool) error {
	if p == nil || p.Name() == "" {
		return fmt.Errorf("%w: migration %s: a path needs a name", ErrInvalidConfig, r.name)
	}
	if wantedIn == nil {
		wantedIn = runsPath(flags.Path(p.Name()))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	for _, q := range r.paths {
		if q.sup.Name() == p.Name() {
			return fmt.Errorf("migration %s: path %s: %w", r.name, p.Name(), ErrDuplicatePath)
		}
	}
	r.paths = append(r.paths, &registered{wanted: wantedIn, sup: NewSupervisor(p, r.cfg.Backoff, r.log)})
	return nil
}

// Share lists a process-wide path in this runner's status (the journal worker, which serves
// every migration of the process). The runner neither starts nor stops it.
func (r *Runner) Share(s *Supervisor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shared = append(r.shared, s)
}

// Run supervises the migration's paths until ctx ends or Stop is called, then stops every path,
// waits for them and returns nil. It evaluates the flags at once and again whenever they
// change, computes the policy and starts the paths it wants, stopping the others: the choice
// is made from the flags each time, never from what ran before (as Vitess' vreplicator
// chooses its work from saved state). It returns ErrRunning when the runner runs already and
// ErrClosed after Close.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return ErrClosed
	case r.stopRun != nil:
		r.mu.Unlock()
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	r.stopRun, r.runDone = cancel, done
	r.mu.Unlock()
	defer func() {
		cancel()
		for _, p := range r.snapshot() {
			p.sup.Stop()
		}
		r.mu.Lock()
		r.stopRun, r.runDone = nil, nil
		r.mu.Unlock()
		close(done)
	}()

	gen := r.cfg.Flags.Generation()
	r.apply(ctx, r.evaluate(ctx))
	t := time.NewTicker(r.cfg.PolicyCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			// Values evaluated after reading a generation are current up to it at least.
			if g := r.cfg.Flags.Generation(); g != gen {
				gen = g
				r.apply(ctx, r.evaluate(ctx))
			}
		}
	}
}

// Stop ends Run, if it runs, and waits until it has stopped every path.
func (r *Runner) Stop() {
	r.mu.Lock()
	cancel, done := r.stopRun, r.runDone
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (r *Runner) evaluate(ctx context.Context) flags.Values {
	spec := r.cfg.Spec
	return r.cfg.Flags.Evaluate(ctx, flags.Context{
		Migration: r.name, Database: spec.Source.Database, Collection: spec.Source.Collection, Tenant: r.cfg.Tenant,
	})
}

func (r *Runner) snapshot() []*registered {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.paths)
}

// apply takes in v: its policy becomes the runner's, and every path runs or stops as the
// policy wants. A stopping path is waited for.
func (r *Runner) apply(ctx context.Context, v flags.Values) {
	pol := flags.PolicyFor(v)
	r.mu.Lock()
	prev := r.policy
	first := r.since.IsZero()
	r.values, r.policy = v, pol
	if first || prev.Phase != pol.Phase {
		r.since = time.Now()
		r.log.Info("migration phase taken in", "phase", pol.Phase, "paths", pol.Paths, "writes", pol.WriteConverge)
	}
	r.mu.Unlock()
	for _, p := range r.snapshot() {
		if p.wanted(pol) {
			p.sup.Start(ctx)
		} else {
			p.sup.Stop()
		}
	}
}

// Status reports the phase, its policy and every path's state.
func (r *Runner) Status() Status {
	r.mu.Lock()
	spec := r.cfg.Spec
	st := Status{
		Migration: r.name, SpecVersion: spec.Version,
		Namespace: spec.Source.Database + "." + spec.Source.Collection, Target: spec.Target.String(),
		Running: r.stopRun != nil, Flags: r.values, Policy: r.policy, PhaseSince: r.since,
	}
	paths, shared := slices.Clone(r.paths), slices.Clone(r.shared)
	r.mu.Unlock()
	st.Paths = make([]PathStatus, 0, len(paths)+len(shared))
	for _, p := range paths {
		ps := p.sup.Status()
		ps.Wanted = p.wanted(st.Policy)
		st.Paths = append(st.Paths, ps)
	}
	for _, s := range shared {
		ps := s.Status()
		ps.Shared, ps.Wanted = true, true
		st.Paths = append(st.Paths, ps)
	}
	return st
}
