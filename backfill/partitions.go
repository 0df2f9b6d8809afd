package backfill

import (
	"context"
	"sort"
	"time"

	"github.com/tandemdb/tandem/catalog"
)

// Partition states in PartitionProgress.
const (
	PartitionWaiting = "waiting" // never claimed
	PartitionCopying = "copying" // held by a live lease
	PartitionStalled = "stalled" // claimed once, its lease expired before it was done: the next free worker takes it over
	PartitionDone    = "done"
)

// PartitionProgress is one partition of a backfill as the catalog has it, for the dashboard and
// "tandem status": which process holds it, how far it is, and when it should end.
type PartitionProgress struct {
	Index int `json:"index"`
	// Class is the BSON type of a MongoDB range's keys ("string", "objectId", …); Segment of
	// Segments names a DynamoDB scan segment.
	Class    string `json:"class,omitempty"`
	Segment  int    `json:"segment,omitempty"`
	Segments int    `json:"segments,omitempty"`
	State    string `json:"state"`
	// Estimate is the partition's documents when the plan was made; Copied and DeadLettered
	// count its documents up to its checkpoint.
	Estimate     int64 `json:"estimate"`
	Copied       int64 `json:"copied"`
	DeadLettered int64 `json:"dead_lettered"`
	Errors       int64 `json:"errors"`
	// Owner is the process holding (or that last held) the lease; Generation counts claims.
	Owner      string    `json:"owner,omitempty"`
	Generation int64     `json:"generation,omitempty"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
	// DocsPerSec is the owner's rate shared out over the leases it holds; ETA the time left at
	// that rate (0: unknown, or done).
	DocsPerSec float64       `json:"docs_per_sec"`
	ETA        time.Duration `json:"eta_ns"`
}

// StatusAndPartitions reads a backfill's progress (Status) and every partition of its plan
// with its lease and its owner's rate, from one read of the catalog; ErrNotStarted when the
// migration has no plan.
func StatusAndPartitions(ctx context.Context, c *catalog.Catalog, migration string) (Progress, []PartitionProgress, error) {
	st, err := readState(ctx, c, migration, true)
	if err != nil {
		return Progress{}, nil, err
	}
	now := time.Now()
	return progressOf(migration, st, now), partitionProgress(st.parts, st.leases, st.runners, now), nil
}

func partitionProgress(parts []catalog.BackfillPartition, leases map[int]catalog.BackfillLease, runners []catalog.BackfillRunner, now time.Time) []PartitionProgress {
	perLease := map[string]float64{} // owner → documents/s of one of its leases
	for _, r := range runners {
		if now.Sub(r.UpdatedAt) < staleAfter(DefaultPoll) && r.Leases > 0 {
			perLease[r.Owner] = r.DocsPerSec / float64(r.Leases)
		}
	}
	out := make([]PartitionProgress, 0, len(parts))
	for _, p := range parts {
		pp := PartitionProgress{Index: p.Index, Class: p.Class, Estimate: p.Estimate, State: PartitionWaiting}
		if p.Segments > 0 {
			pp.Segment, pp.Segments = p.Segment, p.Segments
		}
		if l, ok := leases[p.Index]; ok {
			pp.Copied, pp.DeadLettered, pp.Errors = l.Copied, l.DeadLettered, l.Errors
			pp.Owner, pp.Generation, pp.UpdatedAt = l.Owner, l.Generation, l.UpdatedAt
			switch {
			case l.Done:
				pp.State = PartitionDone
			case now.Before(l.ExpiresAt):
				pp.State = PartitionCopying
				pp.DocsPerSec = perLease[l.Owner]
			default:
				pp.State = PartitionStalled
			}
		}
		if left := pp.Estimate - pp.Copied - pp.DeadLettered; pp.State == PartitionCopying && left > 0 && pp.DocsPerSec > 0 {
			pp.ETA = time.Duration(float64(left) / pp.DocsPerSec * float64(time.Second))
		}
		out = append(out, pp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}
