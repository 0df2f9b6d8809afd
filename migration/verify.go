package migration

import (
	"context"
	"fmt"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/verify"
)

// verifyConfig is the verification of the runner's migration as its spec describes it: the
// forward transform, the invariants and required indexes, the settle time, rates, budget and
// backlog bound of its verify section; the catalog's changed keys feed the rechecks. With
// repair, confirmed mismatches are converged forward by the runner's engine.
func (r *Runner) verifyConfig(repair bool) verify.Config {
	spec := r.cfg.Spec
	v := spec.Verify
	cfg := verify.Config{
		Migration: r.name, SpecVersion: spec.Version, Old: r.old, New: r.cfg.New, Forward: spec.Forward,
		Invariants: v.Invariants, Indexes: spec.RequiredIndexes(), Catalog: r.cfg.Catalog,
		Changes: verify.CatalogChanges{Catalog: r.cfg.Catalog, Migration: r.name},
		Settle:  v.Settle, Rate: v.Rate, SampleRate: v.SampleRate, MismatchBudget: v.MismatchBudget, MaxBacklog: v.MaxBacklog,
		Plan: v.Plan, SpillDir: v.SpillDir,
		Logger: r.log, Metrics: r.cfg.VerifyMetrics,
	}
	if repair {
		cfg.Repair = r.repair
	}
	return cfg
}

// repair converges a key forward; a dead letter is an error (the key stays different).
func (r *Runner) repair(ctx context.Context, key any) error {
	res, err := r.engine.Converge(ctx, key, shadow.Forward)
	if err == nil && res.Action == shadow.DeadLettered {
		err = fmt.Errorf("dead-lettered: %s", res.Reason)
	}
	return err
}

// Verify runs a verification (verify.Run) of mode once, joining one that another process
// started and has not finished, and saves its summary; the cutover gate reads the run's
// state. With repair, each confirmed mismatch is converged and rechecked.
func (r *Runner) Verify(ctx context.Context, repair bool) (catalog.VerifySummary, error) {
	return verify.Run(ctx, r.verifyConfig(repair))
}

// AddVerifyPath registers continuous verification (verify.Continuous) as the runner's verify
// path: it runs in the phases whose policy lists flags.PathVerify (shadow, dual, cutover).
// With repair, confirmed mismatches are converged as they are found.
func (r *Runner) AddVerifyPath(repair bool) error {
	return r.AddPath(verifyPath{cfg: r.verifyConfig(repair)}, nil)
}

// verifyPath is continuous verification as a path.
type verifyPath struct{ cfg verify.Config }

func (verifyPath) Name() string { return string(flags.PathVerify) }

func (p verifyPath) Run(ctx context.Context) error { return verify.Continuous(ctx, p.cfg) }
