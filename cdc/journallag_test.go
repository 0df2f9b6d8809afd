package cdc

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tandemdb/tandem/adapters"
)

func entryAt(migration string, partition int32, offset, hw int64, at time.Time) adapters.JournalEntry {
	return adapters.JournalEntry{Migration: migration, Key: "k", At: at,
		Position: adapters.JournalPosition{Topic: "t", Partition: partition, Offset: offset, HighWatermark: hw}}
}

func TestLagTracker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	now := t0.Add(time.Minute)
	for _, tc := range []struct {
		name  string
		steps func(*lagTracker)
		want  map[string]time.Duration
	}{
		{"nothing seen", func(*lagTracker) {}, map[string]time.Duration{}},
		{"caught up", func(l *lagTracker) {
			b := []adapters.JournalEntry{entryAt("a", 0, 0, 2, t0), entryAt("a", 0, 1, 2, t0.Add(time.Second))}
			l.started(b)
			l.done(b, now)
		}, map[string]time.Duration{"a": 0}},
		{"behind: now minus the newest entry converged", func(l *lagTracker) {
			b := []adapters.JournalEntry{entryAt("a", 0, 0, 10, t0), entryAt("a", 0, 1, 10, t0.Add(10*time.Second))}
			l.started(b)
			l.done(b, now)
		}, map[string]time.Duration{"a": 50 * time.Second}},
		{"batch failing: now minus its oldest entry of the migration", func(l *lagTracker) {
			l.started([]adapters.JournalEntry{entryAt("a", 0, 0, 3, t0.Add(5*time.Second)), entryAt("b", 0, 1, 3, t0.Add(20*time.Second)), entryAt("a", 0, 2, 3, t0.Add(30*time.Second))})
		}, map[string]time.Duration{"a": 55 * time.Second, "b": 40 * time.Second}},
		{"worst partition wins; another migration's partition does not count", func(l *lagTracker) {
			b0 := []adapters.JournalEntry{entryAt("a", 0, 0, 1, t0)}
			l.started(b0)
			l.done(b0, now)
			b1 := []adapters.JournalEntry{entryAt("a", 1, 0, 5, t0.Add(30*time.Second))}
			l.started(b1)
			l.done(b1, now)
			b2 := []adapters.JournalEntry{entryAt("c", 2, 0, 5, t0)}
			l.started(b2)
		}, map[string]time.Duration{"a": 30 * time.Second, "c": time.Minute}},
		{"a clock ahead of ours is no negative lag", func(l *lagTracker) {
			l.started([]adapters.JournalEntry{entryAt("a", 0, 0, 1, now.Add(time.Hour))})
		}, map[string]time.Duration{"a": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLagTracker(time.Hour)
			for _, m := range []string{"a", "b", "c"} {
				l.known(m)
			}
			tc.steps(l)
			assert.Equal(t, tc.want, l.lags(now))
		})
	}

	t.Run("unknown migrations are not reported", func(t *testing.T) {
		l := newLagTracker(time.Hour)
		l.known("a")
		l.started([]adapters.JournalEntry{entryAt("a", 0, 0, 3, t0), entryAt("ghost", 0, 1, 3, t0)})
		assert.Equal(t, map[string]time.Duration{"a": time.Minute}, l.lags(now))
	})

	t.Run("anyLag: the worst partition, whatever its migrations", func(t *testing.T) {
		l := newLagTracker(time.Hour)
		assert.Zero(t, l.anyLag(now))
		b := []adapters.JournalEntry{entryAt("a", 0, 0, 5, t0.Add(20*time.Second))}
		l.started(b)
		l.done(b, now)
		l.started([]adapters.JournalEntry{entryAt("b", 1, 0, 1, t0.Add(10*time.Second))})
		assert.Equal(t, 50*time.Second, l.anyLag(now))
	})

	t.Run("a partition left behind is forgotten", func(t *testing.T) {
		l := newLagTracker(time.Minute)
		l.known("a")
		l.started([]adapters.JournalEntry{entryAt("a", 0, 0, 3, t0)})
		assert.Equal(t, map[string]time.Duration{"a": time.Minute}, l.lags(now))
		// Not touched for longer than forgetAfter: revoked, or the worker stopped.
		assert.Equal(t, map[string]time.Duration{"a": 0}, l.lags(time.Now().Add(2*time.Minute)))
	})
}

func TestJournalPositionBehind(t *testing.T) {
	assert.Equal(t, int64(0), adapters.JournalPosition{Offset: 9, HighWatermark: 10}.Behind())
	assert.Equal(t, int64(4), adapters.JournalPosition{Offset: 5, HighWatermark: 10}.Behind())
	assert.Equal(t, int64(0), adapters.JournalPosition{}.Behind())
}
