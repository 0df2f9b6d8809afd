package flags_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/flags"
)

// BenchmarkEvaluate measures the proxy's per-evaluation cost: four OpenFeature evaluations
// answered from the provider's snapshot (no catalog call).
func BenchmarkEvaluate(b *testing.B) {
	c := newCatalog(b)
	register(b, c, "users-v2")
	_, err := flags.NewManager(c).Set(context.Background(), "users-v2", map[string]string{"phase": "shadow", "shadow_read_percent": "10"}, "bench", "bench")
	require.NoError(b, err)
	p, err := flags.NewProvider(c, flags.WithPollInterval(time.Second))
	require.NoError(b, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := flags.Register(ctx, b.Name(), p)
	require.NoError(b, err)
	defer p.Shutdown()
	e := flags.NewEvaluator(cl)
	defer e.Close()
	fc := flags.Context{Migration: "users-v2", Database: "app", Collection: "users", App: "billing"}
	if v := e.Evaluate(ctx, fc); v.Phase != flags.PhaseShadow {
		b.Fatalf("evaluated %+v", v)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.Evaluate(ctx, fc)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				e.Evaluate(ctx, fc)
			}
		})
	})
	b.Run("generation", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = e.Generation()
		}
	})
	b.Run("snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Snapshot("users-v2")
		}
	})
}

// BenchmarkWatchdogShadowRead measures the cost the watchdog adds to a shadow read.
func BenchmarkWatchdogShadowRead(b *testing.B) {
	c := newCatalog(b)
	w, err := flags.NewWatchdog(flags.NewManager(c), flags.WatchdogConfig{Migration: "users-v2"})
	require.NoError(b, err)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			w.ShadowRead(i%20 == 0)
			i++
		}
	})
}
