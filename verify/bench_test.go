package verify_test

import (
	"context"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/verify"
)

// BenchmarkFullPass compares a full pass of a converged MongoDB → MongoDB migration of 5000
// documents (embedded FerretDB) by merged ordered scans, by the join of spilled scans and by
// batched look-ups with a raw
// dual scan: both stores read in the same partitions, nothing compared. Each iteration is a
// fresh run in a fresh catalog; docs/s is reported.
func BenchmarkFullPass(b *testing.B) {
	const n = 5000
	f := newFixture(b)
	seedB(b, f, n)
	ctx := context.Background()
	run := func(b *testing.B, plan string) {
		for i := 0; b.Loop(); i++ {
			g, err := openFixture(fmt.Sprintf("%s_run%d_%s", f.db, i, plan))
			if err != nil {
				b.Fatal(err)
			}
			g.old, g.new = f.old, f.new
			cfg := g.config()
			cfg.Batch, cfg.Partitions, cfg.Plan = 500, 4, plan
			if _, err := verify.Run(ctx, cfg); err != nil {
				b.Fatal(err)
			}
			_ = client.Database(g.db + "_meta").Drop(ctx)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "docs/s")
	}
	b.Run("merge", func(b *testing.B) { run(b, verify.PlanMerge) })
	b.Run("join", func(b *testing.B) { run(b, verify.PlanJoin) })
	b.Run("lookups", func(b *testing.B) { run(b, verify.PlanLookup) })
	b.Run("raw-dual-scan", func(b *testing.B) {
		for b.Loop() {
			parts, err := f.old.Partitions(ctx, 4)
			if err != nil {
				b.Fatal(err)
			}
			for _, p := range parts {
				for _, s := range []adapters.Store{f.old, f.new} {
					if err := s.Scan(ctx, p, adapters.ScanOptions{Batch: 500}, func([]bson.D) error { return nil }); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "docs/s")
	})
}

func seedB(b *testing.B, f *fixture, n int) {
	ctx := context.Background()
	for start := 0; start < n; start += 500 {
		var olds, news []adapters.WriteOp
		for i := start; i < min(start+500, n); i++ {
			d := user(i)
			out, err := f.spec.Forward(d)
			if err != nil {
				b.Fatal(err)
			}
			olds = append(olds, adapters.WriteOp{Key: userID(i), Doc: d})
			news = append(news, adapters.WriteOp{Key: userID(i), Doc: out})
		}
		if err := f.old.BulkWrite(ctx, olds); err != nil {
			b.Fatal(err)
		}
		if err := f.new.BulkWrite(ctx, news); err != nil {
			b.Fatal(err)
		}
	}
}
