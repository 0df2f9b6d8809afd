package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/migration"
)

// The overview is the whole of a migration on one page: what the dashboard draws and "tandem
// status" prints. Each section is read on its own; one that cannot be read (the catalog holds
// no backfill plan yet, the runtime does not run here) is left out, and a failure to read one is
// named in Errors, so an outage of one part does not blank the screen.

// DefaultEventInterval is how often an event stream sends the overview.
const DefaultEventInterval = 2 * time.Second

// Overview limits.
const (
	overviewMismatches  = 20
	overviewDeadLetters = 20
	overviewAudit       = 20
	overviewDriftPoints = 240
	overviewDriftWindow = 24 * time.Hour
	// maxEventStreams bounds the event streams open at once: each reads the catalog every
	// interval.
	maxEventStreams = 16
	// maxEventStream ends a stream after this long; the browser's EventSource reconnects at
	// once, so the stream goes on, and a stream never outlives a revoked session by more.
	maxEventStream = 10 * time.Minute
	// lagFresh is how old a lag report may be and still count as the component's lag.
	lagFresh = time.Minute
)

// Runbooks, by the problem they remedy; the paths are the repository's.
const (
	RunbookCutover            = "docs/runbooks/cutover.md"
	RunbookRollback           = "docs/runbooks/rollback.md"
	RunbookHistoryLost        = "docs/runbooks/change-stream-history-lost.md"
	RunbookNewStoreOutage     = "docs/runbooks/new-store-outage.md"
	RunbookStuckBackfill      = "docs/runbooks/stuck-backfill.md"
	RunbookDeadLettersGrowing = "docs/runbooks/dead-letters-growing.md"
	RunbookChangeLag          = "docs/runbooks/change-lag.md"
	RunbookVerifyMismatches   = "docs/runbooks/verify-mismatches.md"
)

// Runbooks lists every runbook a Problem may name.
var Runbooks = []string{RunbookCutover, RunbookRollback, RunbookHistoryLost, RunbookNewStoreOutage, RunbookStuckBackfill,
	RunbookDeadLettersGrowing, RunbookChangeLag, RunbookVerifyMismatches}

type (
	// MigrationSummary is one migration in GET /v1/migrations.
	MigrationSummary struct {
		Name        string    `json:"name"`
		Phase       string    `json:"phase"`
		Revision    int64     `json:"revision"`
		SpecVersion string    `json:"spec_version"`
		UpdatedAt   time.Time `json:"updated_at"`
	}
	// MigrationsResponse is the answer to GET /v1/migrations.
	MigrationsResponse struct {
		Migrations []MigrationSummary `json:"migrations"`
	}

	// Overview is the answer to GET /v1/migrations/{name}/overview: every part of a migration.
	Overview struct {
		Migration string       `json:"migration"`
		At        time.Time    `json:"at"`
		Flags     flags.Values `json:"flags"`
		// NextPhase is where "move the phase" (POST …/phase) goes from here, "" when nowhere:
		// from dual the way on is the cutover, which checks the gates.
		NextPhase string `json:"next_phase,omitempty"`
		// Gates are the cutover gates as a cutover now would find them.
		Gates []flags.GateResult `json:"gates"`
		// Runtime is this process's runner of the migration; nil when it runs elsewhere.
		Runtime *migration.Status `json:"runtime,omitempty"`
		// Backfill is nil before a backfill plan exists.
		Backfill *BackfillOverview `json:"backfill,omitempty"`
		// Streams are the change-capture paths (forward, reverse) with their lag.
		Streams []StreamOverview `json:"streams"`
		// Lags are the fresh lag reports of every component (change streams, the journal).
		Lags []LagEntry `json:"lags"`
		// Verify is the newest verification run; nil before the first.
		Verify *catalog.VerifyState `json:"verify,omitempty"`
		// Drift is the run's confirmed and pending mismatches over the last 24 hours, oldest
		// first, at most 240 points.
		Drift []catalog.VerifyDriftPoint `json:"drift"`
		// Mismatches are the newest open mismatches, field paths and hashes only: no values.
		Mismatches  []catalog.VerifyMismatch `json:"mismatches"`
		DeadLetters DeadLetterOverview       `json:"dead_letters"`
		// Audit is the newest audit entries, newest first.
		Audit []HistoryEntry `json:"audit"`
		// Problems are what needs a person now, worst first, each with its runbook.
		Problems []Problem `json:"problems"`
		// Errors names each section that could not be read, and why.
		Errors map[string]string `json:"errors,omitempty"`
	}

	// BackfillOverview is the backfill's progress over every process and each partition.
	BackfillOverview struct {
		backfill.Progress
		PartitionList []backfill.PartitionProgress `json:"partition_list"`
	}

	// StreamOverview is one change-capture path.
	StreamOverview struct {
		Path      string `json:"path"`      // "forward-cdc", "reverse-cdc"
		Direction string `json:"direction"` // "forward", "reverse"
		Source    string `json:"source"`
		State     string `json:"state"`
		Detail    string `json:"detail,omitempty"`
		// At is the source time of the newest change converged; Applied counts them.
		At      time.Time `json:"at,omitzero"`
		Applied int64     `json:"applied"`
		// Lag is the worst fresh lag report of the path's component; LagKnown says there
		// was one in the last minute.
		Lag       time.Duration `json:"lag_ns"`
		LagKnown  bool          `json:"lag_known"`
		UpdatedAt time.Time     `json:"updated_at"`
	}

	// LagEntry is one process's lag report of a component ("cdc-forward", "cdc-reverse",
	// "journal-forward").
	LagEntry struct {
		Component string        `json:"component"`
		Owner     string        `json:"owner"`
		Lag       time.Duration `json:"lag_ns"`
		UpdatedAt time.Time     `json:"updated_at"`
	}

	// DeadLetterOverview counts the unresolved dead letters and lists the oldest.
	DeadLetterOverview struct {
		Forward int64             `json:"forward"`
		Reverse int64             `json:"reverse"`
		Oldest  []DeadLetterEntry `json:"oldest"`
	}
	// DeadLetterEntry is a dead letter as the API shows it: its key as text, no document.
	DeadLetterEntry struct {
		Key       string `json:"key"`
		Direction string `json:"direction"`
		Step      string `json:"step"`
		Reason    string `json:"reason"`
		// SpecVersion is the spec version it failed under.
		SpecVersion string    `json:"spec_version"`
		Attempts    int64     `json:"attempts"`
		FirstSeen   time.Time `json:"first_seen"`
		LastSeen    time.Time `json:"last_seen"`
	}

	// Problem is something that needs a person: which part, how bad, what is wrong, and the
	// runbook that remedies it.
	Problem struct {
		Component string `json:"component"` // "backfill", "forward-cdc", "verify", "dead-letters", a runtime path
		Severity  string `json:"severity"`  // "critical" or "warning"
		Message   string `json:"message"`
		Runbook   string `json:"runbook"`
	}
)

// Problem severities.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
)

func (h *handler) listMigrations(w http.ResponseWriter, r *http.Request) {
	if !h.backfillAvailable(w) {
		return
	}
	ms, err := h.backfill.Migrations(r.Context())
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	out := MigrationsResponse{Migrations: make([]MigrationSummary, 0, len(ms))}
	for _, m := range ms {
		out.Migrations = append(out.Migrations, MigrationSummary{Name: m.Name, Phase: m.Phase, Revision: m.Revision, SpecVersion: m.SpecVersion, UpdatedAt: m.UpdatedAt})
	}
	sort.Slice(out.Migrations, func(i, j int) bool { return out.Migrations[i].Name < out.Migrations[j].Name })
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) getOverview(w http.ResponseWriter, r *http.Request) {
	if !h.backfillAvailable(w) {
		return
	}
	o, err := h.overview(r.Context(), r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

// events streams the overview as server-sent events ("event: overview"), one every interval,
// until the client goes; an unknown migration is a plain 404 first. A read that fails on the
// way is sent as "event: problem" and the stream goes on.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	if !h.backfillAvailable(w) {
		return
	}
	name := r.PathValue("name")
	first, err := h.overview(r.Context(), name)
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	select {
	case <-h.closing:
		writeError(w, http.StatusServiceUnavailable, CodeInternal, "the server is shutting down", nil)
		return
	default:
	}
	select {
	case h.streams <- struct{}{}:
		defer func() { <-h.streams }()
	default:
		writeError(w, http.StatusServiceUnavailable, CodeInternal, fmt.Sprintf("%d event streams are open already: poll GET /v1/migrations/%s/overview instead", maxEventStreams, name), nil)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, CodeInternal, "this server cannot stream", nil)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	if !send("overview", first) {
		return
	}
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	end := time.NewTimer(maxEventStream)
	defer end.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.closing:
			return
		case <-end.C:
			return
		case <-tick.C:
		}
		if !h.readAllowed(r) {
			return // the session ended (signed out): the reconnect is refused
		}
		o, err := h.overview(r.Context(), name)
		var ok bool
		if err != nil {
			ok = send("problem", ErrorResponse{Error: err.Error(), Code: CodeInternal})
		} else {
			ok = send("overview", o)
		}
		if !ok {
			return
		}
	}
}

// overview reads every section of a migration; only an unreadable flag record (an unknown
// migration, the catalog down) fails it.
func (h *handler) overview(ctx context.Context, name string) (Overview, error) {
	v, err := h.flags.Get(ctx, name)
	if err != nil {
		return Overview{}, err
	}
	o := Overview{Migration: name, At: time.Now().UTC(), Flags: v, NextPhase: flags.AdvanceTarget(v.Phase), Gates: []flags.GateResult{}, Streams: []StreamOverview{},
		Lags: []LagEntry{}, Drift: []catalog.VerifyDriftPoint{}, Mismatches: []catalog.VerifyMismatch{},
		DeadLetters: DeadLetterOverview{Oldest: []DeadLetterEntry{}}, Audit: []HistoryEntry{}, Problems: []Problem{}}
	note := func(section string, err error) {
		if o.Errors == nil {
			o.Errors = map[string]string{}
		}
		o.Errors[section] = err.Error()
	}
	if g, err := h.flags.CheckGates(ctx, name); err != nil {
		note("gates", err)
	} else {
		o.Gates = g
	}
	if h.status != nil {
		if st, err := h.status(ctx, name); err == nil {
			o.Runtime = &st
		} else if !errors.Is(err, catalog.ErrNotFound) {
			note("runtime", err)
		}
	}
	h.backfillOverview(ctx, &o, note)
	h.streamOverview(ctx, &o, note)
	h.verifyOverview(ctx, &o, note)
	h.deadLetterOverview(ctx, &o, note)
	if entries, err := h.flags.History(ctx, name, overviewAudit); err != nil {
		note("audit", err)
	} else {
		for _, e := range entries {
			o.Audit = append(o.Audit, historyEntry(e))
		}
	}
	o.Problems = problems(o)
	return o, nil
}

func (h *handler) backfillOverview(ctx context.Context, o *Overview, note func(string, error)) {
	p, parts, err := backfill.StatusAndPartitions(ctx, h.backfill, o.Migration)
	switch {
	case errors.Is(err, backfill.ErrNotStarted):
	case err != nil:
		note("backfill", err)
	default:
		o.Backfill = &BackfillOverview{Progress: p, PartitionList: parts}
	}
}

func (h *handler) streamOverview(ctx context.Context, o *Overview, note func(string, error)) {
	streams, err := h.backfill.CDCStreams(ctx, o.Migration)
	if err != nil {
		note("streams", err)
		return
	}
	lags, err := h.backfill.Lags(ctx, o.Migration)
	if err != nil {
		note("lags", err)
	}
	worst := map[string]time.Duration{} // component → worst fresh lag
	for _, l := range lags {
		if o.At.Sub(l.UpdatedAt) > lagFresh {
			continue
		}
		o.Lags = append(o.Lags, LagEntry{Component: l.Component, Owner: l.Owner, Lag: l.Lag, UpdatedAt: l.UpdatedAt})
		if cur, ok := worst[l.Component]; !ok || l.Lag > cur {
			worst[l.Component] = l.Lag
		}
	}
	sort.Slice(o.Lags, func(i, j int) bool { return o.Lags[i].Component < o.Lags[j].Component })
	for _, s := range streams {
		dir := strings.TrimSuffix(s.Path, "-cdc")
		so := StreamOverview{Path: s.Path, Direction: dir, Source: s.Source, State: s.State, Detail: s.Detail, At: s.At, Applied: s.Applied, UpdatedAt: s.UpdatedAt}
		so.Lag, so.LagKnown = worst["cdc-"+dir]
		o.Streams = append(o.Streams, so)
	}
	sort.Slice(o.Streams, func(i, j int) bool { return o.Streams[i].Path < o.Streams[j].Path })
}

func (h *handler) verifyOverview(ctx context.Context, o *Overview, note func(string, error)) {
	st, err := h.backfill.VerifyState(ctx, o.Migration)
	if errors.Is(err, catalog.ErrNotFound) {
		return
	}
	if err != nil {
		note("verify", err)
		return
	}
	o.Verify = &st
	drift, err := h.backfill.VerifyDrift(ctx, o.Migration, st.RunID, o.At.Add(-overviewDriftWindow))
	if err != nil {
		note("drift", err)
	} else {
		o.Drift = thin(drift, overviewDriftPoints)
	}
	ms, err := h.backfill.VerifyMismatches(ctx, o.Migration, catalog.VerifyMismatchQuery{RunID: st.RunID, Limit: overviewMismatches})
	if err != nil {
		note("mismatches", err)
	} else if ms != nil {
		o.Mismatches = ms
	}
}

// thin keeps at most n points of a series, evenly spaced, always with the newest.
func thin(ps []catalog.VerifyDriftPoint, n int) []catalog.VerifyDriftPoint {
	if len(ps) <= n {
		return ps
	}
	out := make([]catalog.VerifyDriftPoint, 0, n)
	step := float64(len(ps)-1) / float64(n-1)
	for i := range n {
		out = append(out, ps[int(float64(i)*step+0.5)])
	}
	return out
}

func (h *handler) deadLetterOverview(ctx context.Context, o *Overview, note func(string, error)) {
	var err error
	if o.DeadLetters.Forward, err = h.backfill.CountDeadLettersByDirection(ctx, o.Migration, catalog.DirectionForward); err != nil {
		note("dead_letters", err)
		return
	}
	if o.DeadLetters.Reverse, err = h.backfill.CountDeadLettersByDirection(ctx, o.Migration, catalog.DirectionReverse); err != nil {
		note("dead_letters", err)
		return
	}
	dls, err := h.backfill.DeadLetters(ctx, o.Migration, catalog.DeadLetterFilter{Limit: overviewDeadLetters})
	if err != nil {
		note("dead_letters", err)
		return
	}
	for _, d := range dls {
		o.DeadLetters.Oldest = append(o.DeadLetters.Oldest, deadLetterEntry(d))
	}
}

func historyEntry(e catalog.AuditEntry) HistoryEntry {
	return HistoryEntry{ID: e.ID, Migration: e.Migration, Kind: e.Kind, Subject: e.Subject, From: e.From, To: e.To, Who: e.Who, Why: e.Why, At: e.At, Revision: e.Revision}
}

// Thresholds of the overview's problems: what is wrong now. The Prometheus alerts of
// deploy/prometheus watch the same things over time (a lag over 30 s for 5 minutes, say), with
// thresholds of their own (deploy/README.md).
const (
	problemLag          = 60 * time.Second // change-stream or journal lag
	problemBackfillIdle = 5 * time.Minute  // a running backfill with no process copying
)

// problems lists what needs a person, worst first.
func problems(o Overview) []Problem {
	var ps []Problem
	add := func(component, severity, runbook, format string, args ...any) {
		ps = append(ps, Problem{Component: component, Severity: severity, Message: fmt.Sprintf(format, args...), Runbook: runbook})
	}
	for _, s := range o.Streams {
		switch s.State {
		case catalog.CDCRunning:
			if s.LagKnown && s.Lag > problemLag {
				add(s.Path, SeverityWarning, RunbookChangeLag, "%s change stream is %s behind its source (over %s)", s.Direction, s.Lag.Round(time.Second), problemLag)
			}
		case catalog.CDCHistoryLost:
			add(s.Path, SeverityCritical, RunbookHistoryLost, "%s change stream lost its history: %s", s.Direction, s.Detail)
		default:
			add(s.Path, SeverityCritical, RunbookHistoryLost, "%s change stream stopped (%s): %s", s.Direction, s.State, s.Detail)
		}
	}
	for _, l := range o.Lags {
		if strings.HasPrefix(l.Component, "journal") && l.Lag > problemLag {
			add(l.Component, SeverityWarning, RunbookChangeLag, "the journal worker on %s is %s behind (over %s)", l.Owner, l.Lag.Round(time.Second), problemLag)
		}
	}
	if n := o.DeadLetters.Forward + o.DeadLetters.Reverse; n > 0 {
		sev := SeverityWarning
		if o.DeadLetters.Reverse > 0 {
			sev = SeverityCritical // a reverse dead letter blocks the cutover and a clean rollback
		}
		add("dead-letters", sev, RunbookDeadLettersGrowing, "%d dead letter(s): %d forward, %d reverse", n, o.DeadLetters.Forward, o.DeadLetters.Reverse)
	}
	if v := o.Verify; v != nil {
		confirmed := v.Confirmed.Total()
		if confirmed > v.MismatchBudget {
			add("verify", SeverityCritical, RunbookVerifyMismatches, "%d confirmed mismatch(es), over the budget of %d", confirmed, v.MismatchBudget)
		}
	}
	if b := o.Backfill; b != nil && b.State == backfill.StateRunning && len(b.Runners) == 0 {
		stalled := 0
		for _, p := range b.PartitionList {
			if p.State == backfill.PartitionStalled {
				stalled++
			}
		}
		if stalled > 0 || o.At.Sub(b.StartedAt) > problemBackfillIdle {
			add("backfill", SeverityWarning, RunbookStuckBackfill, "the backfill is not done (%d of %d partitions, %d stalled) and no process is copying it",
				b.PartitionsDone, b.Partitions, stalled)
		}
	}
	if rt := o.Runtime; rt != nil {
		for _, p := range rt.Paths {
			if p.State == migration.StateBackingOff {
				add(p.Name, SeverityWarning, runbookForPath(p.Name), "path %s is backing off after %d restart(s): %s", p.Name, p.Restarts, p.LastError)
			}
		}
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Severity == SeverityCritical && ps[j].Severity != SeverityCritical })
	if ps == nil {
		ps = []Problem{}
	}
	return ps
}

func runbookForPath(name string) string {
	switch name {
	case "backfill":
		return RunbookStuckBackfill
	case "forward-cdc", "reverse-cdc":
		return RunbookHistoryLost
	}
	return RunbookNewStoreOutage
}
