package admin_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/verify"
)

// TestVerifyStateEndpoint: GET /v1/migrations/{name}/verify answers the newest run's state
// (here, after a run that found one missing document), and not found before any run.
func TestVerifyStateEndpoint(t *testing.T) {
	f := newFixture(t, "tok")
	ctx := context.Background()
	c, err := admin.NewClient(f.url, "tok", nil)
	require.NoError(t, err)
	_, err = c.VerifyState(ctx, migration)
	var e *admin.Error
	require.True(t, errors.As(err, &e), "%v", err)
	assert.Equal(t, admin.CodeNotFound, e.Code)

	bf := f.backfillConfig(t, 3)
	old, target := bf.Old, bf.New
	for _, op := range []string{"u000", "u001", "u002"} {
		doc, err := old.Get(ctx, op)
		require.NoError(t, err)
		out, err := bf.Spec.Forward(doc)
		require.NoError(t, err)
		if op != "u001" {
			require.NoError(t, target.Upsert(ctx, out))
		}
	}
	_, err = verify.Run(ctx, verify.Config{Migration: migration, Old: old, New: target, Forward: bf.Spec.Forward, Catalog: f.cat, Plan: verify.PlanLookup})
	require.NoError(t, err)
	st, err := c.VerifyState(ctx, migration)
	require.NoError(t, err)
	assert.Equal(t, "run-000001", st.RunID)
	assert.True(t, st.FullPassDone)
	assert.Equal(t, int64(1), st.Confirmed.Missing)
	assert.False(t, st.Clean())
}
