package backfill_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tandemdb/tandem/backfill"
)

// BenchmarkCopy copies 3000 documents FerretDB → FerretDB with the defaults (4 workers, batches
// of 500) and chunks of 25, and reports documents/s:
//
//	go test -run '^$' -bench Copy -benchtime 1x ./backfill/
func BenchmarkCopy(b *testing.B) {
	const n = 3000
	for range b.N {
		b.StopTimer()
		e := newEnv(b, "")
		e.seed(b, n)
		cfg := e.config()
		cfg.Workers, cfg.Partitions, cfg.Batch, cfg.Chunk, cfg.Lease, cfg.Poll = 0, 0, 0, 25, 0, 0
		if os.Getenv("TANDEM_BENCH_NORECHECK") != "" {
			backfill.WithHooks(&cfg, backfill.Hooks{NoRecheck: true}) // the cost of the interplay rule
		}
		b.StartTimer()
		start := time.Now()
		sum, err := backfill.Run(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(sum.Copied)/time.Since(start).Seconds(), "docs/s")
		b.StopTimer()
	}
}
