package admin

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/migration"
)

// TestProblems checks each rule of the overview's problems, with what must not raise one
// beside it, and that critical ones come first.
func TestProblems(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	running := func(started time.Duration, runners int, states ...string) *BackfillOverview {
		b := &BackfillOverview{Progress: backfill.Progress{State: backfill.StateRunning, StartedAt: now.Add(-started), Partitions: len(states)}}
		for range runners {
			b.Runners = append(b.Runners, catalog.BackfillRunner{Owner: "a"})
		}
		for i, s := range states {
			b.PartitionList = append(b.PartitionList, backfill.PartitionProgress{Index: i, State: s})
		}
		return b
	}
	tests := []struct {
		name string
		o    Overview
		want []Problem // component, severity and runbook; the message is checked to be there
	}{
		{name: "nothing wrong", o: Overview{
			Streams:  []StreamOverview{{Path: "forward-cdc", Direction: "forward", State: catalog.CDCRunning, Lag: 59 * time.Second, LagKnown: true}},
			Lags:     []LagEntry{{Component: "journal-forward", Lag: 59 * time.Second}},
			Verify:   &catalog.VerifyState{MismatchBudget: 2, Confirmed: catalog.VerifyCounts{Missing: 2}},
			Backfill: running(time.Hour, 1, backfill.PartitionCopying),
			Runtime:  &migration.Status{Paths: []migration.PathStatus{{Name: "verify", State: migration.StateRunning}}},
		}},
		{name: "change-stream lag", o: Overview{Streams: []StreamOverview{{Path: "forward-cdc", Direction: "forward", State: catalog.CDCRunning, Lag: 61 * time.Second, LagKnown: true}}},
			want: []Problem{{Component: "forward-cdc", Severity: SeverityWarning, Runbook: RunbookChangeLag}}},
		{name: "journal lag", o: Overview{Lags: []LagEntry{{Component: "journal-forward", Owner: "h:1", Lag: 2 * time.Minute}}},
			want: []Problem{{Component: "journal-forward", Severity: SeverityWarning, Runbook: RunbookChangeLag}}},
		{name: "streams stopped", o: Overview{Streams: []StreamOverview{
			{Path: "forward-cdc", Direction: "forward", State: catalog.CDCInvalidated},
			{Path: "reverse-cdc", Direction: "reverse", State: catalog.CDCHistoryLost}}},
			want: []Problem{{Component: "forward-cdc", Severity: SeverityCritical, Runbook: RunbookHistoryLost},
				{Component: "reverse-cdc", Severity: SeverityCritical, Runbook: RunbookHistoryLost}}},
		{name: "forward dead letters", o: Overview{DeadLetters: DeadLetterOverview{Forward: 3}},
			want: []Problem{{Component: "dead-letters", Severity: SeverityWarning, Runbook: RunbookDeadLettersGrowing}}},
		{name: "a reverse dead letter", o: Overview{DeadLetters: DeadLetterOverview{Forward: 3, Reverse: 1}},
			want: []Problem{{Component: "dead-letters", Severity: SeverityCritical, Runbook: RunbookDeadLettersGrowing}}},
		{name: "mismatches over the budget", o: Overview{Verify: &catalog.VerifyState{MismatchBudget: 2, Confirmed: catalog.VerifyCounts{Missing: 2, Differing: 1}}},
			want: []Problem{{Component: "verify", Severity: SeverityCritical, Runbook: RunbookVerifyMismatches}}},
		{name: "a young backfill nobody copies yet", o: Overview{Backfill: running(time.Minute, 0, backfill.PartitionWaiting)}},
		{name: "an old backfill nobody copies", o: Overview{Backfill: running(time.Hour, 0, backfill.PartitionWaiting)},
			want: []Problem{{Component: "backfill", Severity: SeverityWarning, Runbook: RunbookStuckBackfill}}},
		{name: "a stalled partition nobody takes", o: Overview{Backfill: running(time.Minute, 0, backfill.PartitionDone, backfill.PartitionStalled)},
			want: []Problem{{Component: "backfill", Severity: SeverityWarning, Runbook: RunbookStuckBackfill}}},
		{name: "a paused backfill", o: Overview{Backfill: &BackfillOverview{Progress: backfill.Progress{State: backfill.StatePaused, StartedAt: now.Add(-time.Hour)}}}},
		{name: "a path backing off, and the worst first", o: Overview{
			Runtime:     &migration.Status{Paths: []migration.PathStatus{{Name: "backfill", State: migration.StateBackingOff, Restarts: 2, LastError: "new store down"}}},
			DeadLetters: DeadLetterOverview{Reverse: 1}},
			want: []Problem{{Component: "dead-letters", Severity: SeverityCritical, Runbook: RunbookDeadLettersGrowing},
				{Component: "backfill", Severity: SeverityWarning, Runbook: RunbookStuckBackfill}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.At = now
			got := problems(tt.o)
			var stripped []Problem
			for _, p := range got {
				assert.NotEmpty(t, p.Message)
				stripped = append(stripped, Problem{Component: p.Component, Severity: p.Severity, Runbook: p.Runbook})
			}
			assert.Equal(t, tt.want, stripped, "%+v", got)
		})
	}
}

// TestThin: a long drift series is cut to n evenly spaced points with the first and the
// newest; a short one is kept whole.
func TestThin(t *testing.T) {
	var ps []catalog.VerifyDriftPoint
	for i := range 1000 {
		ps = append(ps, catalog.VerifyDriftPoint{Generation: int64(i)})
	}
	got := thin(ps, 240)
	assert.Len(t, got, 240)
	assert.Equal(t, int64(0), got[0].Generation)
	assert.Equal(t, int64(999), got[239].Generation, "the newest point is kept")
	for i := 1; i < len(got); i++ {
		assert.Greater(t, got[i].Generation, got[i-1].Generation, "in order, none twice")
	}
	assert.Equal(t, ps[:5], thin(ps[:5], 240))
}
