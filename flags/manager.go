package flags

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandemdb/tandem/catalog"
)

// Sentinel errors of the Manager. Each error it returns wraps exactly one of them, with a
// message naming the migration, the flag or the phase involved.
var (
	// ErrUnknownFlag means a flag name is not one of Names.
	ErrUnknownFlag = errors.New("unknown flag")
	// ErrBadValue means a flag value is not one the flag accepts, or not allowed in the phase
	// the migration is (or would be) in, such as read_source=new before cutover.
	ErrBadValue = errors.New("bad flag value")
	// ErrPhaseStep means a phase move is not allowed: a skipped step, a move into cutover other
	// than through Cutover, a backward move other than through Rollback, or a rollback from a
	// phase that has nothing before it (off) or nothing to return to (finalized).
	ErrPhaseStep = errors.New("phase move not allowed")
	// ErrGateFailed means Cutover refused because at least one gate failed; the GateResults say
	// which and why.
	ErrGateFailed = errors.New("cutover gate failed")
	// ErrNotFound means the migration is not in the catalog. It wraps catalog.ErrNotFound too.
	ErrNotFound = errors.New("no such migration")
	// ErrConflict means another change to the migration landed first; nothing was changed.
	// Re-read and retry. It wraps catalog.ErrConflict too.
	ErrConflict = errors.New("flags changed concurrently; re-read and retry")
	// ErrReasonRequired means a rollback was asked for without saying why.
	ErrReasonRequired = errors.New("a reason (why) is required")
)

// Manager reads and changes migration flags under the phase rules. Every change is one catalog
// change: one revision, one audit entry with who and why, and of several racing changes
// exactly one lands. The Manager keeps no state of its own, so any number of them, in any
// number of processes, may share a catalog. It is safe for concurrent use.
type Manager struct {
	cat          *catalog.Catalog
	gates        GateConfig
	reverseCheck func(ctx context.Context, migration string) error
	now          func() time.Time
}

// ManagerOption configures NewManager.
type ManagerOption func(*Manager)

// WithGates sets the cutover gates' limits; a zero field keeps its default (see GateConfig).
func WithGates(g GateConfig) ManagerOption { return func(m *Manager) { m.gates = g.withDefaults() } }

// WithReverseCheck adds a check to the reverse_path gate, run after the dead-letter count: a
// non-nil error fails the gate with the error as detail. By default there is none.
func WithReverseCheck(check func(ctx context.Context, migration string) error) ManagerOption {
	return func(m *Manager) { m.reverseCheck = check }
}

// WithClock sets the time source the gates judge ages by, overriding time.Now (for tests).
func WithClock(now func() time.Time) ManagerOption { return func(m *Manager) { m.now = now } }

// NewManager returns a Manager over cat.
func NewManager(cat *catalog.Catalog, opts ...ManagerOption) *Manager {
	m := &Manager{cat: cat, gates: GateConfig{}.withDefaults(), now: time.Now}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Get returns a migration's flags.
func (m *Manager) Get(ctx context.Context, migration string) (Values, error) {
	_, v, err := m.load(ctx, migration)
	return v, err
}

// load reads a migration and its flags.
func (m *Manager) load(ctx context.Context, migration string) (catalog.Migration, Values, error) {
	if migration == "" {
		return catalog.Migration{}, Values{}, fmt.Errorf("%w: empty migration name", ErrNotFound)
	}
	mig, err := m.cat.Migration(ctx, migration)
	if err != nil {
		return mig, Values{}, catalogError(err)
	}
	v, err := valuesOf(mig)
	return mig, v, err
}

// catalogError wraps a catalog error with the flags sentinel that matches it.
func catalogError(err error) error {
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, catalog.ErrConflict):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// Set changes several flags in one change. Every name and value is checked first, and on any
// error nothing changes. read_source, shadow_read_percent and write_block may change freely
// within the rule that read_source=new needs phase cutover or finalized (and finalized needs
// read_source=new); phase may only move exactly one step forward, and never into cutover,
// which only Cutover enters. Setting flags to the values they have is no change and succeeds
// without an audit entry.
func (m *Manager) Set(ctx context.Context, migration string, changes map[string]string, who, why string) (Values, error) {
	if len(changes) == 0 {
		return Values{}, fmt.Errorf("%w: no flags given; valid flags are %s", ErrBadValue, strings.Join(Names, ", "))
	}
	names := make([]string, 0, len(changes))
	for name := range changes {
		names = append(names, name)
	}
	slices.Sort(names)
	parsed := make(map[string]string, len(changes))
	for _, name := range names {
		if !slices.Contains(Names, name) {
			return Values{}, unknownFlag(name)
		}
		c, err := canonical(name, changes[name])
		if err != nil {
			return Values{}, err
		}
		parsed[name] = c
	}
	mig, cur, err := m.load(ctx, migration)
	if err != nil {
		return Values{}, err
	}
	next := cur
	for name, value := range parsed {
		next.set(name, value)
	}
	if next.Phase != cur.Phase {
		if err := forwardStep(migration, cur.Phase, next.Phase); err != nil {
			return cur, err
		}
	}
	if err := checkReadSource(migration, next); err != nil {
		return cur, err
	}
	return m.commit(ctx, mig, cur, next, who, why)
}

// forwardStep checks a phase move made by Set or Advance: one step forward, not into cutover.
func forwardStep(migration, from, to string) error {
	fi, ti := phaseIndex(from), phaseIndex(to)
	switch {
	case ti == fi:
		return fmt.Errorf("%w: %s is already in phase %s", ErrPhaseStep, migration, to)
	case ti < fi:
		return fmt.Errorf("%w: moving %s from %s back to %s is a rollback: use rollback", ErrPhaseStep, migration, from, to)
	case from == PhaseFinalized:
		return fmt.Errorf("%w: %s is finalized, the last phase", ErrPhaseStep, migration)
	case ti > fi+1:
		return fmt.Errorf("%w: cannot move %s from %s to %s: phases move one step at a time; the next step is %s",
			ErrPhaseStep, migration, from, to, nextPhase(from))
	case to == PhaseCutover:
		return fmt.Errorf("%w: %s can enter cutover only through cutover, which checks the gates first", ErrPhaseStep, migration)
	}
	return nil
}

// checkReadSource enforces that the new store serves reads only once it has authority, and
// always once the old store is retired.
func checkReadSource(migration string, v Values) error {
	switch {
	case v.ReadSource == ReadNew && !readsNewAllowed(v.Phase):
		return fmt.Errorf("%w: read_source=new needs phase cutover or finalized; %s would be in phase %s (reads come from old until cutover)",
			ErrBadValue, migration, v.Phase)
	case v.ReadSource != ReadNew && v.Phase == PhaseFinalized:
		return fmt.Errorf("%w: read_source=%s is not allowed in phase finalized: the old store is retired; %s must read from new",
			ErrBadValue, v.ReadSource, migration)
	}
	return nil
}

// commit writes next as one catalog change from the revision cur was read at.
func (m *Manager) commit(ctx context.Context, mig catalog.Migration, cur, next Values, who, why string) (Values, error) {
	changes := changesBetween(cur, next)
	if len(changes) == 0 {
		return cur, nil
	}
	got, err := m.cat.SetFlags(ctx, mig.Name, mig.Revision, changes, who, why)
	if err != nil {
		return cur, catalogError(err)
	}
	return valuesOf(got)
}

// Advance moves a migration one phase forward, to to ("" means the next phase). Cutover is not
// reachable this way: use Cutover. Finalizing needs read_source=new, which Cutover sets.
func (m *Manager) Advance(ctx context.Context, migration, to, who, why string) (Values, error) {
	if to != "" && phaseIndex(to) < 0 {
		return Values{}, fmt.Errorf("%w: phase %q: want one of %s", ErrBadValue, to, strings.Join(Phases, ", "))
	}
	mig, cur, err := m.load(ctx, migration)
	if err != nil {
		return Values{}, err
	}
	if to == "" {
		if to = nextPhase(cur.Phase); to == "" {
			return cur, fmt.Errorf("%w: %s is finalized, the last phase", ErrPhaseStep, migration)
		}
	}
	if err := forwardStep(migration, cur.Phase, to); err != nil {
		return cur, err
	}
	next := cur
	next.Phase = to
	if err := checkReadSource(migration, next); err != nil {
		return cur, fmt.Errorf("%w (set read_source=new first)", err)
	}
	return m.commit(ctx, mig, cur, next, who, why)
}

// Cutover gives the new store authority: from phase dual only, it runs every gate and, if all
// pass, sets phase=cutover and read_source=new in one change. It returns every gate's result,
// passed or failed; when one failed, nothing changes and the error (ErrGateFailed) names the
// failed gates.
func (m *Manager) Cutover(ctx context.Context, migration, who, why string) (Values, []GateResult, error) {
	mig, cur, err := m.load(ctx, migration)
	if err != nil {
		return Values{}, nil, err
	}
	if cur.Phase != PhaseDual {
		if cur.Phase == PhaseCutover {
			return cur, nil, fmt.Errorf("%w: %s is already in cutover", ErrPhaseStep, migration)
		}
		return cur, nil, fmt.Errorf("%w: cutover is only from phase dual; %s is in phase %s", ErrPhaseStep, migration, cur.Phase)
	}
	results := m.checkGates(ctx, migration)
	var failed []string
	for _, r := range results {
		if !r.OK {
			failed = append(failed, r.Gate+" ("+r.Detail+")")
		}
	}
	if len(failed) > 0 {
		return cur, results, fmt.Errorf("%w: cutover of %s refused: %s", ErrGateFailed, migration, strings.Join(failed, "; "))
	}
	next := cur
	next.Phase, next.ReadSource = PhaseCutover, ReadNew
	v, err := m.commit(ctx, mig, cur, next, who, why)
	return v, results, err
}

// Rollback returns authority to the old store. It is never gated, but needs a reason. to ""
// means one step back (cutover→dual, dual→shadow, shadow→off); an explicit earlier phase is
// allowed too. Nothing rolls back from off, nor from finalized, where the old store is retired.
// The same change always sets read_source=old and write_block=false.
func (m *Manager) Rollback(ctx context.Context, migration, to, who, why string) (Values, error) {
	if strings.TrimSpace(why) == "" {
		return Values{}, fmt.Errorf("%w: say why %s is rolled back", ErrReasonRequired, migration)
	}
	if to != "" && phaseIndex(to) < 0 {
		return Values{}, fmt.Errorf("%w: phase %q: want one of %s", ErrBadValue, to, strings.Join(Phases, ", "))
	}
	mig, cur, err := m.load(ctx, migration)
	if err != nil {
		return Values{}, err
	}
	switch {
	case cur.Phase == PhaseFinalized:
		return cur, fmt.Errorf("%w: %s is finalized: the old store is retired and there is nothing to roll back to", ErrPhaseStep, migration)
	case cur.Phase == PhaseOff:
		return cur, fmt.Errorf("%w: %s is in phase off: nothing to roll back", ErrPhaseStep, migration)
	case to == "":
		to = previousPhase(cur.Phase)
	case phaseIndex(to) >= phaseIndex(cur.Phase):
		return cur, fmt.Errorf("%w: rollback of %s must go to a phase before %s, not %s", ErrPhaseStep, migration, cur.Phase, to)
	}
	next := cur
	next.Phase, next.ReadSource, next.WriteBlock = to, ReadOld, false
	return m.commit(ctx, mig, cur, next, who, why)
}

// History returns a migration's audit trail, newest first, at most limit entries (0: all).
func (m *Manager) History(ctx context.Context, migration string, limit int) ([]catalog.AuditEntry, error) {
	if limit < 0 {
		return nil, fmt.Errorf("%w: history limit %d: want 0 (all) or more", ErrBadValue, limit)
	}
	if _, _, err := m.load(ctx, migration); err != nil && errors.Is(err, ErrNotFound) {
		return nil, err
	}
	entries, err := m.cat.AuditNewest(ctx, migration, int64(limit))
	if err != nil {
		return nil, catalogError(err)
	}
	return entries, nil
}
