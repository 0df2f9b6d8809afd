package verify_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/verify"
)

// BenchmarkFullPassMemory measures the peak Go heap in use during a merged full pass at several
// store sizes (TANDEM_BENCH_VERIFY_SIZES, default "20000,100000"), to show whether memory stays
// flat as the store grows. The embedded FerretDB runs in the benchmark's process, so its heap
// is counted too: a flat peak means both are flat. Stores are seeded with insertMany, which
// FerretDB does fast, not with the converge's upserts.
func BenchmarkFullPassMemory(b *testing.B) {
	sizes := []int{20000, 100000}
	if env := os.Getenv("TANDEM_BENCH_VERIFY_SIZES"); env != "" {
		sizes = nil
		for _, f := range strings.Split(env, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("TANDEM_BENCH_VERIFY_SIZES: %q is not a positive document count", f)
			}
			sizes = append(sizes, n)
		}
	}
	ctx := context.Background()
	for _, n := range sizes {
		b.Run(fmt.Sprintf("docs=%d", n), func(b *testing.B) {
			f := newFixture(b)
			for start := 0; start < n; start += 1000 {
				var olds, news []any
				for i := start; i < min(start+1000, n); i++ {
					d := user(i)
					out, err := f.spec.Forward(d)
					if err != nil {
						b.Fatal(err)
					}
					olds, news = append(olds, d), append(news, out)
				}
				if _, err := f.old.(*adapters.MongoStore).Collection().InsertMany(ctx, olds); err != nil {
					b.Fatal(err)
				}
				if _, err := f.new.(*adapters.MongoStore).Collection().InsertMany(ctx, news); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)
			for i := 0; b.Loop(); i++ {
				g, err := openFixture(fmt.Sprintf("%s_mem%d", f.db, i))
				if err != nil {
					b.Fatal(err)
				}
				g.old, g.new = f.old, f.new
				cfg := g.config()
				cfg.Batch, cfg.Partitions = 500, 4
				peak := watchHeap()
				sum, err := verify.Run(ctx, cfg)
				top := peak()
				if err != nil {
					b.Fatal(err)
				}
				if sum.Keys < int64(n) {
					b.Fatalf("compared %d keys of %d", sum.Keys, n)
				}
				b.ReportMetric(float64(top)/(1<<20), "peak-heap-MiB")
				b.ReportMetric(float64(base.HeapInuse)/(1<<20), "heap-before-MiB")
				_ = client.Database(g.db + "_meta").Drop(ctx)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "docs/s")
		})
	}
}

// watchHeap samples HeapInuse every 50ms until the returned function is called, which returns
// the highest value seen. With TANDEM_BENCH_HEAPPROF=FILE it writes a heap profile to FILE at
// each new peak above 60 MiB, to see whose memory it is.
func watchHeap() func() uint64 {
	var mu sync.Mutex
	var top uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			mu.Lock()
			if path := os.Getenv("TANDEM_BENCH_HEAPPROF"); path != "" && m.HeapInuse > top && m.HeapInuse > 60<<20 {
				if f, err := os.Create(path); err == nil {
					_ = pprof.WriteHeapProfile(f)
					_ = f.Close()
				}
			}
			top = max(top, m.HeapInuse)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return top
	}
}
