package backfill

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tandemdb/tandem/catalog"
)

// TestPartitionProgress: each partition's state comes from its newest lease (none: waiting;
// done; live: copying; expired before done: stalled), and a copying one's rate is its owner's
// shared out over the owner's leases, which gives its ETA.
func TestPartitionProgress(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	parts := []catalog.BackfillPartition{
		{Index: 3, Class: "string", Estimate: 100}, {Index: 0, Class: "string", Estimate: 100},
		{Index: 1, Class: "objectId", Estimate: 100}, {Index: 2, Segment: 1, Segments: 4, Estimate: 100},
	}
	leases := map[int]catalog.BackfillLease{
		0: {Owner: "a", Generation: 1, Done: true, Copied: 100, ExpiresAt: now.Add(time.Minute)},
		1: {Owner: "a", Generation: 2, Copied: 40, DeadLettered: 10, ExpiresAt: now.Add(time.Minute)},
		2: {Owner: "b", Generation: 1, Copied: 30, ExpiresAt: now.Add(-time.Second)},
	}
	runners := []catalog.BackfillRunner{
		{Owner: "a", Leases: 2, DocsPerSec: 20, UpdatedAt: now.Add(-time.Second)},
		{Owner: "b", Leases: 1, DocsPerSec: 99, UpdatedAt: now.Add(-time.Hour)}, // stale: not counted
	}
	got := partitionProgress(parts, leases, runners, now)
	assert.Equal(t, []PartitionProgress{
		{Index: 0, Class: "string", State: PartitionDone, Estimate: 100, Copied: 100, Owner: "a", Generation: 1},
		{Index: 1, Class: "objectId", State: PartitionCopying, Estimate: 100, Copied: 40, DeadLettered: 10, Owner: "a", Generation: 2,
			DocsPerSec: 10, ETA: 5 * time.Second}, // 50 left at 20/s over 2 leases
		{Index: 2, Segment: 1, Segments: 4, State: PartitionStalled, Estimate: 100, Copied: 30, Owner: "b", Generation: 1},
		{Index: 3, Class: "string", State: PartitionWaiting, Estimate: 100},
	}, got)
}
