package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemdb/tandem/catalog"
)

// LeaseStore is what Elect needs of the catalog: *catalog.Catalog.
type LeaseStore interface {
	AcquireLeaderLease(ctx context.Context, name, owner string, ttl, skew time.Duration) (catalog.LeaderClaim, error)
	RenewLeaderLease(ctx context.Context, l catalog.LeaderLease, ttl time.Duration) (catalog.LeaderLease, error)
	ReleaseLeaderLease(ctx context.Context, l catalog.LeaderLease) error
	// ProcessID names this process; it is the default owner.
	ProcessID() string
}

var _ LeaseStore = (*catalog.Catalog)(nil)

// ErrLeaseExpired is the cause (context.Cause) of a leader's context that ended because its
// lease could not be renewed before it expired (the catalog unreachable or too slow). A
// context that ended because another process took the lease over has a cause wrapping
// catalog.ErrLeaseLost.
var ErrLeaseExpired = errors.New("leader lease expired before it could be renewed")

// errLeadEnded is the cause of a leader's context that ended because its work returned.
var errLeadEnded = errors.New("leader work returned")

// Defaults of ElectConfig.
const (
	DefaultLeaseTTL  = 10 * time.Second
	DefaultClockSkew = time.Second
)

// ElectConfig configures Elect.
type ElectConfig struct {
	// Leases is the catalog the lease lives in. Required.
	Leases LeaseStore
	// Name names the lease, one per singleton ("users/cdc-forward"). Required; no '#'.
	Name string
	// Owner names this contender in the lease's records. Optional; default Leases.ProcessID().
	Owner string
	// TTL is how long a generation stays valid without renewal: how long a dead leader keeps
	// the work stopped, and how long a leader cut off from the catalog keeps working. Optional;
	// default DefaultLeaseTTL (10s).
	TTL time.Duration
	// RenewEvery is how often the leader renews. Optional; default TTL/3; less than TTL.
	RenewEvery time.Duration
	// ClockSkew is how far the clocks of the contending processes may differ: a successor
	// waits that much longer than the predecessor's expiry. Optional; default TTL/10, at most
	// DefaultClockSkew (1s).
	ClockSkew time.Duration
	// RetryEvery is how often a follower tries to acquire (jittered by ±50%). Optional;
	// default TTL/3.
	RetryEvery time.Duration
	// Metrics receives whether this contender leads, acquisitions, takeovers and losses.
	// Optional; default: unregistered collectors.
	Metrics *LeaderMetrics
	// Logger is the logger. Optional; default slog.Default().
	Logger *slog.Logger
}

func (c ElectConfig) withDefaults() (ElectConfig, error) {
	if c.Leases == nil {
		return c, errors.New("cdc: ElectConfig.Leases is required")
	}
	if c.Name == "" {
		return c, errors.New("cdc: ElectConfig.Name is required")
	}
	if err := catalog.CheckLeaderLeaseName(c.Name); err != nil {
		return c, fmt.Errorf("cdc: ElectConfig.Name: %w", err)
	}
	if c.Owner == "" {
		c.Owner = c.Leases.ProcessID()
	}
	if c.TTL == 0 {
		c.TTL = DefaultLeaseTTL
	}
	if c.RenewEvery == 0 {
		c.RenewEvery = c.TTL / 3
	}
	if c.RetryEvery == 0 {
		c.RetryEvery = c.TTL / 3
	}
	switch {
	case c.TTL < 0:
		return c, fmt.Errorf("cdc: lease %s: negative TTL %s", c.Name, c.TTL)
	case c.RenewEvery <= 0 || c.RenewEvery >= c.TTL:
		return c, fmt.Errorf("cdc: lease %s: RenewEvery %s must be positive and less than the TTL %s", c.Name, c.RenewEvery, c.TTL)
	case c.RetryEvery < 0:
		return c, fmt.Errorf("cdc: lease %s: negative RetryEvery %s", c.Name, c.RetryEvery)
	case c.ClockSkew < 0:
		return c, fmt.Errorf("cdc: lease %s: negative ClockSkew %s", c.Name, c.ClockSkew)
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = min(c.TTL/10, DefaultClockSkew)
	}
	if c.Metrics == nil {
		c.Metrics = NewLeaderMetrics(nil)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Elect runs fn only while this contender holds the leader lease cfg.Name, so that across all
// processes sharing the catalog one fn runs at a time (a change-stream tailer per stream).
//
// It tries to acquire the lease every RetryEvery until it does. It then renews the lease in the
// background every RenewEvery and calls fn with the lease (its Generation is the fencing token
// of the work). fn's context ends the moment a renewal finds a newer generation (cause wrapping
// catalog.ErrLeaseLost) or when the lease could not be renewed before its expiry (cause
// ErrLeaseExpired); Elect then waits for fn to return and tries to acquire again. fn starts only
// once the predecessor has certainly stopped (catalog.LeaderClaim.NotBefore).
//
// When fn returns by itself, or ctx ends, Elect releases the lease (a successor takes over at
// once) and returns: nil when fn returned nil or ctx ended, fn's error otherwise (a
// migration.Supervisor then backs off and runs Elect again). fn must stop promptly when its
// context ends and should do its writes under that context.
//
// What this guarantees, with the processes' clocks within ClockSkew of each other: a
// generation's fn starts after the previous generation's fn was told to stop (context ended)
// or was dead, so two fns never run at once. What it cannot guarantee: that a write fn issued
// before its context ended has landed by then (a write in flight may land later), or anything
// about a process paused (a GC pause, SIGSTOP) between checking its context and writing:
// writes that must never land late should carry the generation for the target to check.
func Elect(ctx context.Context, cfg ElectConfig, fn func(ctx context.Context, lease catalog.LeaderLease) error) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	e := &election{cfg: cfg, log: cfg.Logger.With("lease", cfg.Name, "owner", cfg.Owner)}
	failures := 0
	for ctx.Err() == nil {
		start := time.Now()
		claim, err := cfg.Leases.AcquireLeaderLease(ctx, cfg.Name, cfg.Owner, cfg.TTL, cfg.ClockSkew)
		switch {
		case ctx.Err() != nil:
			if err == nil {
				e.release(claim.Lease) // claimed as ctx ended: let a successor have it at once
			}
			return nil
		case errors.Is(err, catalog.ErrLeaseHeld), errors.Is(err, catalog.ErrConflict):
			failures = 0
			e.log.Debug("another contender leads", "err", err)
			e.wait(ctx, cfg.RetryEvery)
			continue
		case err != nil:
			failures++
			cfg.Metrics.acquireFailures.WithLabelValues(cfg.Name).Inc()
			e.log.Warn("acquiring the leader lease", "attempt", failures, "err", err)
			e.wait(ctx, min(cfg.RetryEvery<<min(failures-1, 4), 10*cfg.TTL))
			continue
		}
		failures = 0
		ran, fnErr, lost := e.lead(ctx, claim, start.Add(cfg.TTL), fn)
		if lost != nil {
			if ctx.Err() != nil {
				return nil
			}
			e.wait(ctx, cfg.RetryEvery)
			continue
		}
		e.release(claim.Lease)
		if ran && fnErr != nil && ctx.Err() == nil {
			return fmt.Errorf("leader work of lease %s (generation %d): %w", cfg.Name, claim.Lease.Generation, fnErr)
		}
		if ran && ctx.Err() == nil {
			return nil
		}
	}
	return nil
}

// election is one contender's state in Elect.
type election struct {
	cfg ElectConfig
	log *slog.Logger
}

// lead holds claim until fn returns or the lease is lost. deadline is when the claim expires by
// this process's clock (TTL after a moment before the claim was written). It reports whether fn
// ran, fn's error, and the cause of losing the lease (nil if it was not lost).
func (e *election) lead(ctx context.Context, claim catalog.LeaderClaim, deadline time.Time,
	fn func(context.Context, catalog.LeaderLease) error) (ran bool, fnErr, lost error) {
	m, name, l := e.cfg.Metrics, e.cfg.Name, claim.Lease
	m.acquisitions.WithLabelValues(name).Inc()
	if l.TookOver {
		m.takeovers.WithLabelValues(name).Inc()
	}
	e.log.Info("leader lease acquired", "generation", l.Generation, "predecessor", l.Predecessor,
		"took_over", l.TookOver, "not_before", claim.NotBefore)

	leadCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(errLeadEnded)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		e.renewLoop(leadCtx, l, deadline, cancel)
	}()
	if wait := time.Until(claim.NotBefore); wait > 0 {
		e.log.Info("waiting for the previous leader's lease to run out", "generation", l.Generation, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-leadCtx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if leadCtx.Err() == nil {
		ran = true
		m.leading.WithLabelValues(name).Set(1)
		m.generation.WithLabelValues(name).Set(float64(l.Generation))
		fnErr = fn(leadCtx, l)
		m.leading.WithLabelValues(name).Set(0)
	}
	cause := context.Cause(leadCtx)
	cancel(errLeadEnded)
	<-renewed
	if errors.Is(cause, catalog.ErrLeaseLost) || errors.Is(cause, ErrLeaseExpired) {
		reason := "fenced"
		if errors.Is(cause, ErrLeaseExpired) {
			reason = "expired"
		}
		m.losses.WithLabelValues(name, reason).Inc()
		e.log.Warn("leader lease lost; the work under it stopped", "generation", l.Generation, "reason", reason, "cause", cause)
		return ran, fnErr, cause
	}
	return ran, fnErr, nil
}

// renewLoop renews l every RenewEvery until ctx ends. It ends the leader's context (cancel)
// with ErrLeaseExpired when deadline passes without a renewal, and with the catalog's error
// when a renewal finds a newer generation. The deadline moves only on a renewal that fully
// succeeded, to TTL after a moment taken before it was sent (see catalog.RenewLeaderLease).
func (e *election) renewLoop(ctx context.Context, l catalog.LeaderLease, deadline time.Time, cancel context.CancelCauseFunc) {
	expire := time.AfterFunc(time.Until(deadline), func() { cancel(ErrLeaseExpired) })
	defer expire.Stop()
	next := time.NewTimer(e.cfg.RenewEvery)
	defer next.Stop()
	m, name := e.cfg.Metrics, e.cfg.Name
	for {
		select {
		case <-ctx.Done():
			return
		case <-next.C:
		}
		start := time.Now()
		rctx, rcancel := context.WithDeadline(ctx, deadline)
		renewed, err := e.cfg.Leases.RenewLeaderLease(rctx, l, e.cfg.TTL)
		rcancel()
		switch {
		case errors.Is(err, catalog.ErrLeaseLost):
			cancel(err)
			return
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			m.renewFailures.WithLabelValues(name).Inc()
			e.log.Warn("renewing the leader lease", "generation", l.Generation, "expires_in", time.Until(deadline), "err", err)
			next.Reset(max(e.cfg.RenewEvery/4, time.Millisecond)) // try again soon, before the deadline
			continue
		}
		if !expire.Stop() {
			return // the deadline passed while the renewal was on its way: the context ended
		}
		l, deadline = renewed, start.Add(e.cfg.TTL)
		expire.Reset(time.Until(deadline))
		next.Reset(e.cfg.RenewEvery)
	}
}

// release gives up a lease whose work has stopped, so that a successor starts at once. A
// failure only delays the successor until the lease expires.
func (e *election) release(l catalog.LeaderLease) {
	ctx, cancel := context.WithTimeout(context.Background(), min(e.cfg.TTL, 5*time.Second))
	defer cancel()
	if err := e.cfg.Leases.ReleaseLeaderLease(ctx, l); err != nil {
		e.log.Warn("releasing the leader lease; a successor waits for it to expire", "generation", l.Generation, "err", err)
		return
	}
	e.log.Info("leader lease released", "generation", l.Generation)
}

// wait sleeps about d (±50%, so that contenders spread out) or until ctx ends.
func (e *election) wait(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	d = d/2 + rand.N(d+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// LeaderMetrics are Elect's collectors, by lease name, registered by the caller.
type LeaderMetrics struct {
	leading         *prometheus.GaugeVec
	generation      *prometheus.GaugeVec
	acquisitions    *prometheus.CounterVec
	takeovers       *prometheus.CounterVec
	losses          *prometheus.CounterVec
	renewFailures   *prometheus.CounterVec
	acquireFailures *prometheus.CounterVec
}

// NewLeaderMetrics creates the collectors and registers them with reg (nil: unregistered).
func NewLeaderMetrics(reg prometheus.Registerer) *LeaderMetrics {
	m := &LeaderMetrics{
		leading: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_leader_leading",
			Help: "1 while this process runs the work of the leader lease, else 0.",
		}, []string{"lease"}),
		generation: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_leader_generation",
			Help: "The generation of the leader lease this process last led under.",
		}, []string{"lease"}),
		acquisitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_leader_acquisitions_total",
			Help: "Generations of the leader lease this process acquired.",
		}, []string{"lease"}),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_leader_takeovers_total",
			Help: "Generations of the leader lease this process acquired from a holder whose lease had expired (it died or lost the catalog) rather than been released.",
		}, []string{"lease"}),
		losses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_leader_losses_total",
			Help: "Times this process lost the leader lease while leading, by reason: fenced (a newer generation was found) or expired (no renewal in time).",
		}, []string{"lease", "reason"}),
		renewFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_leader_renew_failures_total",
			Help: "Renewals of the leader lease that failed and were tried again.",
		}, []string{"lease"}),
		acquireFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_leader_acquire_failures_total",
			Help: "Attempts to acquire the leader lease that failed for another reason than a live holder (the catalog unreachable).",
		}, []string{"lease"}),
	}
	if reg != nil {
		reg.MustRegister(m.leading, m.generation, m.acquisitions, m.takeovers, m.losses, m.renewFailures, m.acquireFailures)
	}
	return m
}
