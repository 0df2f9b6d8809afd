package verify_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/verify"
)

// BenchmarkFullPassMemory measures the memory of a full pass at several store sizes
// (TANDEM_BENCH_VERIFY_SIZES, default "20000,100000"), to show whether it stays flat as the
// store grows: by default a merge of 4 partitions; TANDEM_BENCH_VERIFY_PLAN and
// TANDEM_BENCH_VERIFY_PARTITIONS choose another plan and partitioning (one partition needs no
// split keys, which FerretDB finds by sorting the whole collection). Three processes take part, so that each number is the verifier's alone: the
// store (an embedded FerretDB in a child process of its own, storeMain), the benchmark, which
// seeds the store with large insertMany batches, and, for each iteration, a verifier child
// (memChildMain) that runs the full pass and reports its peak heap and peak resident memory.
// The store's own peak resident memory is reported too (store-rss-MiB), to show where the
// memory a pass needs lives.
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
	for _, n := range sizes {
		b.Run(fmt.Sprintf("docs=%d", n), func(b *testing.B) {
			ctx := context.Background()
			st := startStoreProcess(b)
			c, err := mongo.Connect(options.Client().ApplyURI(st.uri))
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = c.Disconnect(ctx) }()
			db := fmt.Sprintf("verify_mem_%d", n)
			start := time.Now()
			if err := seedFast(ctx, c, db, n); err != nil {
				b.Fatal(err)
			}
			seedTime := time.Since(start)
			b.Logf("seeded %d documents in each store in %s", n, seedTime.Round(time.Millisecond))
			var rep memReport
			for b.Loop() {
				if rep, err = runMemChild(st.uri, db); err != nil {
					b.Fatal(err)
				}
				if rep.Keys < int64(n) {
					b.Fatalf("compared %d keys of %d", rep.Keys, n)
				}
				b.StopTimer()
				_ = c.Database(db + "_meta").Drop(ctx)
				b.StartTimer()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "docs/s")
			b.ReportMetric(rep.PeakHeap/(1<<20), "peak-heap-MiB")
			b.ReportMetric(rep.PeakLive/(1<<20), "peak-live-heap-MiB")
			b.ReportMetric(float64(rep.RSSBeforeKiB)/1024, "rss-before-MiB")
			b.ReportMetric(float64(rep.PeakRSSKiB)/1024, "peak-rss-MiB")
			b.ReportMetric(seedTime.Seconds(), "seed-s")
			b.ReportMetric(float64(st.stop(b))/1024, "store-rss-MiB")
		})
	}
}

// storeProcess is an embedded FerretDB in a child process (storeMain).
type storeProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	uri   string
}

// startStoreProcess starts the test binary as a store process and reads the URI it prints.
// The store stops when its stdin closes: at stop, or when this process dies.
func startStoreProcess(tb testing.TB) *storeProcess {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TANDEM_VERIFY_STORE=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		tb.Fatalf("store process: reading its URI: %v", err)
	}
	s := &storeProcess{cmd: cmd, stdin: stdin, uri: strings.TrimSpace(line)}
	tb.Cleanup(func() { s.stop(tb) })
	return s
}

// stop ends the store process and returns its peak resident memory in KiB (0 if it was
// stopped already).
func (s *storeProcess) stop(tb testing.TB) int64 {
	if s.cmd.ProcessState != nil {
		return 0
	}
	_ = s.stdin.Close()
	if err := waitExit(s.cmd, time.Minute); err != nil {
		tb.Logf("store process: %v", err)
	}
	if ru, ok := s.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}

// storeMain is the store process: an embedded FerretDB on a loopback port, whose URI it
// prints, serving until its stdin closes.
func storeMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	srv, err := embedmongo.Start(ctx, embedmongo.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "store process:", err)
		return 1
	}
	fmt.Println(srv.URI())
	_, _ = io.Copy(io.Discard, os.Stdin)
	srv.Stop()
	return 0
}

// seedFast writes users 0..n-1 to db's users collection and their transforms to users_v2 (a
// converged migration) with insertMany in batches of 10,000, both collections at once.
func seedFast(ctx context.Context, c *mongo.Client, db string, n int) error {
	f, err := openFixtureOn(c, db)
	if err != nil {
		return err
	}
	const batch = 10000
	errs := make(chan error, 2)
	for _, coll := range []string{"users", "users_v2"} {
		go func() {
			errs <- func() error {
				for start := 0; start < n; start += batch {
					docs := make([]any, 0, batch)
					for i := start; i < min(start+batch, n); i++ {
						d := user(i)
						if coll == "users_v2" {
							if d, err = f.spec.Forward(d); err != nil {
								return err
							}
						}
						docs = append(docs, d)
					}
					if _, err := c.Database(db).Collection(coll).InsertMany(ctx, docs); err != nil {
						return fmt.Errorf("seeding %s at %d: %w", coll, start, err)
					}
				}
				return nil
			}()
		}()
	}
	return errors.Join(<-errs, <-errs)
}

// memReport is what a verifier child of the memory benchmark prints.
type memReport struct {
	Keys         int64   `json:"keys"`
	Secs         float64 `json:"secs"`
	PeakHeap     float64 `json:"peak_heap"`      // the largest heap in use sampled (objects and unused spans), bytes
	PeakLive     float64 `json:"peak_live"`      // the largest live heap after a GC, bytes
	RSSBeforeKiB int64   `json:"rss_before_kib"` // VmRSS after connecting, before the pass
	PeakRSSKiB   int64   `json:"peak_rss_kib"`   // VmHWM at the end, reset before the pass: the pass's peak
	Samples      int     `json:"samples"`
}

// runMemChild runs one full pass of db in a verifier child process and returns its report.
func runMemChild(uri, db string) (memReport, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TANDEM_VERIFY_MEMCHILD=1", "TANDEM_VERIFY_URI="+uri, "TANDEM_VERIFY_DB="+db)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return memReport{}, fmt.Errorf("verifier child: %w", err)
	}
	var rep memReport
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &rep); err != nil {
		return rep, fmt.Errorf("verifier child printed %q: %w", stdout.String(), err)
	}
	return rep, nil
}

// memChildMain is the memory benchmark's verifier process: one merged full pass (4
// partitions, batches of 500) of the database its environment names, with its heap sampled
// every 20ms; it prints a memReport as JSON.
func memChildMain() int {
	ctx := context.Background()
	fail := func(what string, err error) int {
		fmt.Fprintln(os.Stderr, "verifier child:", what+":", err)
		return 1
	}
	c, err := mongo.Connect(options.Client().ApplyURI(os.Getenv("TANDEM_VERIFY_URI")))
	if err != nil {
		return fail("connect", err)
	}
	defer func() { _ = c.Disconnect(ctx) }()
	f, err := openFixtureOn(c, os.Getenv("TANDEM_VERIFY_DB"))
	if err != nil {
		return fail("open", err)
	}
	cfg := f.config()
	cfg.Batch, cfg.Partitions = 500, 4
	if env := os.Getenv("TANDEM_BENCH_VERIFY_PARTITIONS"); env != "" {
		if cfg.Partitions, err = strconv.Atoi(env); err != nil || cfg.Partitions <= 0 {
			return fail("TANDEM_BENCH_VERIFY_PARTITIONS", fmt.Errorf("%q is not a positive number", env))
		}
	}
	// The plan: the merge by default; TANDEM_BENCH_VERIFY_PLAN=join measures the join (the
	// plan of MongoDB → DynamoDB) on the same stores, its spill in the system's temp dir.
	cfg.Plan = os.Getenv("TANDEM_BENCH_VERIFY_PLAN")
	runtime.GC()
	var rep memReport
	if rep.RSSBeforeKiB, err = procStatusKiB("VmRSS"); err != nil {
		return fail("reading VmRSS", err)
	}
	// The process's peak so far is its start-up's (the test binary's package initialisation,
	// FerretDB's included): reset the peak (VmHWM) to the current RSS, so that the peak read
	// at the end is the pass's (proc(5), /proc/pid/clear_refs).
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return fail("resetting VmHWM", err)
	}
	peak := watchHeap(&rep)
	start := time.Now()
	sum, err := verify.Run(ctx, cfg)
	rep.Secs = time.Since(start).Seconds()
	peak()
	if err != nil {
		return fail("run", err)
	}
	rep.Keys = sum.Keys
	if rep.PeakRSSKiB, err = procStatusKiB("VmHWM"); err != nil {
		return fail("reading VmHWM", err)
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
	return 0
}

// watchHeap samples the heap with runtime/metrics (no stop of the world) every 20ms into rep
// until the returned function is called. With TANDEM_BENCH_HEAPPROF=FILE it writes a heap
// profile to FILE at a new peak of the live heap, at most once a second, to see whose memory
// it is; with TANDEM_BENCH_TRACE set it prints the memory about every 10s (500 samples) on
// stderr.
func watchHeap(rep *memReport) func() {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	prof := os.Getenv("TANDEM_BENCH_HEAPPROF")
	trace := os.Getenv("TANDEM_BENCH_TRACE") != ""
	var written time.Time
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(samples)
			inUse := float64(samples[0].Value.Uint64() + samples[1].Value.Uint64())
			live := float64(samples[2].Value.Uint64())
			rep.PeakHeap = max(rep.PeakHeap, inUse)
			if live > rep.PeakLive {
				rep.PeakLive = live
				if prof != "" && time.Since(written) > time.Second {
					if f, err := os.Create(prof); err == nil {
						_ = pprof.WriteHeapProfile(f)
						_ = f.Close()
						written = time.Now()
					}
				}
			}
			rep.Samples++
			if trace && rep.Samples%500 == 0 {
				rss, _ := procStatusKiB("VmRSS")
				fmt.Fprintf(os.Stderr, "verifier child: %3.0fs VmRSS %.1f MiB, heap in use %.1f MiB, live %.1f MiB, %d goroutines\n",
					time.Since(start).Seconds(), float64(rss)/1024, inUse/(1<<20), live/(1<<20), runtime.NumGoroutine())
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// procStatusKiB reads one kB field of /proc/self/status.
func procStatusKiB(field string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/self/status has no %s", field)
}
