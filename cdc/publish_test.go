package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/cdc"
)

// TestPublisherFeedsTheJournalWorker publishes a tailer's batch (inserts, an update, a delete)
// to the journal, and a journal worker converges every key into the new store.
func TestPublisherFeedsTheJournalWorker(t *testing.T) {
	onEachKafka(t, testPublisherFeedsTheJournalWorker)
}

func testPublisherFeedsTheJournalWorker(t *testing.T, seeds []string) {
	f := newFixture(t, seeds, nil)
	ctx := context.Background()
	var changes []cdc.Change
	var keys []string
	for i := range 12 {
		k := fmt.Sprintf("p%02d", i)
		keys = append(keys, k)
		require.NoError(t, f.old.Upsert(ctx, user(k, int32(30+i))))
		changes = append(changes, cdc.Change{Key: k, Op: cdc.OpInsert, At: time.Now()})
	}
	changes = append(changes, cdc.Change{Key: "p03", Op: cdc.OpUpdate, At: time.Now()})
	// Deleted from old after the new store got it: the worker deletes it from new.
	require.NoError(t, f.new.Upsert(ctx, bson.D{{Key: "_id", Value: "gone"}, {Key: "v", Value: int32(2)}}))
	changes = append(changes, cdc.Change{Key: "gone", Op: cdc.OpDelete, At: time.Now()})
	keys = append(keys, "gone")

	p, err := cdc.NewPublisher(f.journal, "users-test", "d.users")
	require.NoError(t, err)
	require.NoError(t, p.Publish(ctx, cdc.Batch{Changes: changes, At: time.Now()}))
	f.run(t, cdc.JournalWorkerConfig{})
	eventually(t, "every published key converged", func() bool { return f.converged(t, f.new, keys...) })
	assert.Equal(t, float64(len(changes)), f.metric(t, "tandem_journal_appended_total", map[string]string{"reason": cdc.ReasonChangeStream}))
}

func TestPublisherRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, migration, ns string
		nilJournal          bool
		want                string
	}{
		{"no journal", "m", "d.c", true, "a journal is required"},
		{"no migration", "", "d.c", false, "a migration is required"},
		{"no namespace", "m", "", false, "a namespace is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var j cdc.Appender = noAppend{}
			if tc.nilJournal {
				j = nil
			}
			_, err := cdc.NewPublisher(j, tc.migration, tc.ns)
			require.ErrorContains(t, err, tc.want)
		})
	}
	p, err := cdc.NewPublisher(noAppend{}, "m", "d.c")
	require.NoError(t, err)
	err = p.Publish(context.Background(), cdc.Batch{Changes: []cdc.Change{{Key: "a", Op: cdc.OpInsert}, {Op: cdc.OpUpdate}}})
	require.ErrorContains(t, err, "change 2 of 2 (update) has no key")
}

// noAppend stands in for the journal where nothing may reach it: every Append fails.
type noAppend struct{}

func (noAppend) Append(context.Context, ...adapters.JournalEntry) error {
	return errors.New("Append called: nothing should have been published")
}
