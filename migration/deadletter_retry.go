package migration

import (
	"context"
	"fmt"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/shadow"
)

// DeadLetterRetry is what a retry of a migration's dead letters did.
type DeadLetterRetry struct {
	// Retried counts the dead letters converged again; Resolved those that converged (their
	// records are gone), StillFailing those that failed again (recorded under the runner's spec
	// version, with the new reason).
	Retried      int `json:"retried"`
	Resolved     int `json:"resolved"`
	StillFailing int `json:"still_failing"`
	// SkippedReverse counts reverse dead letters left alone because the phase is before
	// cutover: there the old store is the system of record, and converging new's document back
	// into it could overwrite a newer write.
	SkippedReverse int `json:"skipped_reverse"`
	// SpecVersion is the version they were converged under.
	SpecVersion string `json:"spec_version"`
}

// RetryDeadLetters converges the migration's dead letters again with the runner's spec: those
// recorded under another spec version (the spec was fixed since), or with all every one (the
// data was fixed). Forward ones are retried in every phase; reverse ones only in cutover and
// finalized, when the new store is the system of record. Each converged key's record is
// resolved; one that fails again is kept with its new reason.
func (r *Runner) RetryDeadLetters(ctx context.Context, all bool, phase string) (DeadLetterRetry, error) {
	out := DeadLetterRetry{SpecVersion: r.cfg.Spec.Version}
	f := catalog.DeadLetterFilter{}
	if !all {
		f.NotSpecVersion = r.cfg.Spec.Version
	}
	reverseOK := phase == flags.PhaseCutover || phase == flags.PhaseFinalized
	if !reverseOK {
		f.Direction = catalog.DirectionForward
		n, err := r.countReverse(ctx, all)
		if err != nil {
			return out, err
		}
		out.SkippedReverse = int(n)
	}
	results, err := r.engine.RetryDeadLettersMatching(ctx, f)
	for _, res := range results {
		out.Retried++
		if res.Action == shadow.DeadLettered {
			out.StillFailing++
		} else {
			out.Resolved++
		}
	}
	if err != nil {
		return out, fmt.Errorf("retrying the dead letters of %s: %w", r.name, err)
	}
	return out, nil
}

// countReverse counts the reverse dead letters a retry would take (all, or those of other
// spec versions).
func (r *Runner) countReverse(ctx context.Context, all bool) (int64, error) {
	f := catalog.DeadLetterFilter{Direction: catalog.DirectionReverse}
	if !all {
		f.NotSpecVersion = r.cfg.Spec.Version
	}
	dls, err := r.cfg.Catalog.DeadLetters(ctx, r.name, f)
	if err != nil {
		return 0, err
	}
	return int64(len(dls)), nil
}

// PathDeadLetterRetry is the name of the path that retries, once when the runner starts (in
// every phase that converges), the dead letters recorded under an older spec version.
const PathDeadLetterRetry = "dead-letter-retry"

// AddDeadLetterRetryPath registers PathDeadLetterRetry: a process started with a fixed spec
// converges what the old one could not, with no command needed. It runs in shadow, dual,
// cutover and finalized, retries, logs what it did and is done.
func (r *Runner) AddDeadLetterRetryPath() error {
	return r.AddPath(deadLetterPath{r: r}, func(p flags.Policy) bool { return p.Phase != flags.PhaseOff })
}

type deadLetterPath struct{ r *Runner }

func (deadLetterPath) Name() string { return PathDeadLetterRetry }

func (p deadLetterPath) Run(ctx context.Context) error {
	res, err := p.r.RetryDeadLetters(ctx, false, p.r.Status().Flags.Phase)
	if err != nil {
		return err
	}
	if res.Retried > 0 || res.SkippedReverse > 0 {
		p.r.log.Info("dead letters of older spec versions retried", "retried", res.Retried, "resolved", res.Resolved,
			"still_failing", res.StillFailing, "skipped_reverse_before_cutover", res.SkippedReverse, "spec_version", res.SpecVersion)
	}
	return nil
}
