package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
)

// rssReport is what the memory part's child prints: its memory before and during one
// backfill.
type rssReport struct {
	Docs        int64   `json:"docs"`
	Secs        float64 `json:"secs"`
	StartRSSKiB int64   `json:"start_rss_kib"` // VmRSS after connecting, before Run
	HWMKiB      int64   `json:"hwm_kib"`       // VmHWM at the end: the peak over the whole process
	MaxRSSKiB   int64   `json:"max_rss_kib"`   // the largest VmRSS sampled every 50 ms
	MaxHeapMiB  float64 `json:"max_heap_mib"`  // the largest HeapInuse sampled
	Samples     int     `json:"samples"`
}

// childRSS is the memory part's child process: one backfill of -child-src into a new
// collection on -uri, with memory sampled; it prints an rssReport as JSON.
func childRSS() int {
	ctx := context.Background()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "backfillbench child:", err)
		return 1
	}
	client, err := mongo.Connect(options.Client().ApplyURI(*flagURI))
	if err != nil {
		return fail(err)
	}
	defer client.Disconnect(ctx)
	b := &bench{uri: *flagURI, client: client}
	spec, err := mongoSpec()
	if err != nil {
		return fail(err)
	}
	coll := client.Database(dstDB).Collection(fmt.Sprintf("rss_%d", os.Getpid()))
	defer func() { _ = coll.Drop(context.Background()) }()
	run, err := b.newBackfill(ctx, *flagChildSrc, adapters.NewMongoStore(coll), spec, 0)
	if err != nil {
		return fail(err)
	}
	defer run.drop()
	runtime.GC()
	var rep rssReport
	if rep.StartRSSKiB, err = procStatus("VmRSS"); err != nil {
		return fail(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			if rss, err := procStatus("VmRSS"); err == nil {
				rep.MaxRSSKiB = max(rep.MaxRSSKiB, rss)
			}
			runtime.ReadMemStats(&ms)
			rep.MaxHeapMiB = max(rep.MaxHeapMiB, float64(ms.HeapInuse)/(1<<20))
			rep.Samples++
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	start := time.Now()
	sum, err := backfill.Run(ctx, run.cfg)
	rep.Secs = time.Since(start).Seconds()
	close(stop)
	wg.Wait()
	if err != nil {
		return fail(err)
	}
	rep.Docs = sum.Copied
	if rep.HWMKiB, err = procStatus("VmHWM"); err != nil {
		return fail(err)
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
	return 0
}

// procStatus reads one kB field of /proc/self/status.
func procStatus(field string) (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == field {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: %w", field, errNoHWM)
}

// runRSS seeds a source of each size (in this process) and runs one backfill of it in a child
// process, whose peak memory is reported.
func (b *bench) runRSS(ctx context.Context, sizes []int) error {
	fmt.Println("## Peak resident memory of the backfill (a child process)")
	fmt.Println()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var reps []rssReport
	for _, n := range sizes {
		name, seedTime, err := b.source(ctx, n)
		if err != nil {
			return err
		}
		fmt.Printf("Seeded %d source documents in %s.\n", n, seedTime.Round(time.Millisecond))
		cmd := exec.CommandContext(ctx, exe, "-child-rss", "-uri", b.uri, "-child-src", name,
			"-workers", strconv.Itoa(*flagWorkers), "-batch", strconv.Itoa(*flagBatch))
		var stdout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("child for %d documents: %w", n, err)
		}
		var rep rssReport
		if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &rep); err != nil {
			return fmt.Errorf("child for %d documents printed %q: %w", n, stdout.String(), err)
		}
		if rep.Docs != int64(n) {
			return fmt.Errorf("child copied %d documents, want %d", rep.Docs, n)
		}
		fmt.Printf("  %d documents: backfill %.1f s\n", n, rep.Secs)
		reps = append(reps, rep)
	}
	fmt.Println()
	fmt.Println("| docs | backfill s | VmRSS before Run, MiB | VmHWM at the end, MiB | max VmRSS sampled, MiB | max Go HeapInuse sampled, MiB | samples |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range reps {
		fmt.Printf("| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %d |\n", r.Docs, r.Secs,
			float64(r.StartRSSKiB)/1024, float64(r.HWMKiB)/1024, float64(r.MaxRSSKiB)/1024, r.MaxHeapMiB, r.Samples)
	}
	fmt.Println()
	return nil
}
