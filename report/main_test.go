package report_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/report"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
	"github.com/tandemdb/tandem/verify"
)

var client *mongo.Client

func TestMain(m *testing.M) { testenv.MongoMain(m, &client) }

const migration = "users-v2"

// plantedSecret is a password-like value in one old document: no rendering without values may
// show it.
const plantedSecret = "hunter2-S3cr3t-Pl4nted"

// fixture is the users-v2 example migration between two FerretDB collections, its catalog,
// the flags manager (for the gates) and a report service over them.
type fixture struct {
	old, new adapters.Store
	cat      *catalog.Catalog
	spec     *transform.Spec
	svc      *report.Service
}

var seq atomic.Int64

// newFixture registers users-v2 with a spec whose verify section has budget (none: -1).
func newFixture(t *testing.T, budget int) *fixture {
	t.Helper()
	ctx := context.Background()
	db := client.Database(fmt.Sprintf("report_test_%d", seq.Add(1)))
	t.Cleanup(func() { _ = db.Drop(context.Background()) })
	cat, err := catalog.Open(ctx, client, catalog.WithDatabase(db.Name()+"_meta"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Database(db.Name() + "_meta").Drop(context.Background()) })
	text, err := os.ReadFile("../examples/users-v2.yaml")
	require.NoError(t, err)
	if budget >= 0 {
		text = append(text, fmt.Sprintf("verify: {mismatch_budget: %d}\n", budget)...)
	}
	spec, err := transform.Parse("users-v2.yaml", text)
	require.NoError(t, err)
	_, err = cat.RegisterSpec(ctx, migration, spec.Version, spec.Redacted(), "test")
	require.NoError(t, err)
	mgr := flags.NewManager(cat, flags.WithGates(flags.GateConfig{VerifyMaxAge: 24 * time.Hour, LagFreshness: 24 * time.Hour}))
	src := report.CatalogSource{
		Catalog:    cat,
		Spec:       func(name string) (*transform.Spec, bool) { return spec, name == migration },
		CheckGates: mgr.CheckGates,
	}
	return &fixture{
		old: adapters.NewMongoStore(db.Collection("users")), new: adapters.NewMongoStore(db.Collection("users_v2")),
		cat: cat, spec: spec, svc: &report.Service{Source: src, Catalog: cat},
	}
}

func userID(i int) string { return fmt.Sprintf("user-%06d", i) }

func user(i int) bson.D {
	return bson.D{
		{Key: "_id", Value: userID(i)},
		{Key: "name", Value: fmt.Sprintf("User %d", i)},
		{Key: "email", Value: fmt.Sprintf("user%d@example.com", i)},
		{Key: "age", Value: int32(18 + i%50)},
		{Key: "created", Value: bson.NewDateTimeFromTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Hour))},
	}
}

// seed writes users 0..n-1 to old and their transforms to new: a converged migration.
func (f *fixture) seed(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		d := user(i)
		require.NoError(t, f.old.Upsert(ctx, d))
		require.NoError(t, f.new.Upsert(ctx, f.forward(t, d)))
	}
}

func (f *fixture) forward(t *testing.T, d bson.D) bson.D {
	t.Helper()
	out, err := f.spec.Forward(d)
	require.NoError(t, err)
	return out
}

// corrupt injects four mismatches into a seeded store of at least 8 users: user 3 missing
// from new, an extra key in new, user 5's age of another type in new (a string: numeric
// widening would be no mismatch), and user 7's planted secret different in new.
func (f *fixture) corrupt(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, f.new.Delete(ctx, userID(3)))
	extra := f.forward(t, user(100))
	require.NoError(t, f.new.Upsert(ctx, extra))

	five := f.forward(t, user(5))
	for i := range five {
		if five[i].Key == "age" {
			five[i].Value = fmt.Sprint(five[i].Value)
		}
	}
	require.NoError(t, f.new.Upsert(ctx, five))

	seven := append(user(7), bson.E{Key: "password", Value: plantedSecret})
	require.NoError(t, f.old.Upsert(ctx, seven))
	newSeven := f.forward(t, seven)
	for i := range newSeven {
		if newSeven[i].Key == "password" {
			newSeven[i].Value = "rotated-" + plantedSecret
		}
	}
	require.NoError(t, f.new.Upsert(ctx, newSeven))
}

// verify runs today's verifier over the fixture; it saves its summary and mismatches.
func (f *fixture) verify(t *testing.T) catalog.VerifySummary {
	t.Helper()
	sum, _ := verify.Run(context.Background(), verify.Config{
		Migration: migration, Old: f.old, New: f.new, Forward: f.spec.Forward, Catalog: f.cat,
		Partitions: 2, Batch: 5, Concurrency: 2,
	})
	require.Empty(t, sum.Aborted)
	return sum
}

// render renders r in format, values left out unless withValues.
func render(t *testing.T, r report.Report, format string, withValues bool) string {
	t.Helper()
	if !withValues {
		r = r.WithoutValues()
	}
	var b bytes.Buffer
	require.NoError(t, report.Render(&b, r, format))
	return b.String()
}

func bsonE(k string, v any) bson.E { return bson.E{Key: k, Value: v} }
