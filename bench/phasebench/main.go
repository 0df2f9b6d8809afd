// Command phasebench measures what a migration's phase costs the client, and how fast a
// rollback reaches every proxy, on an embedded FerretDB with the users-v2 example migration:
//
//  1. Latency by phase: one proxy, clients doing a write-heavy mix (ReplaceOne upsert and
//     UpdateOne by _id, FindOne by _id) on the migrated collection, in interleaved rounds of
//     passthrough (phase off), shadow and dual, switched with flags.Manager between rounds. It
//     reports each mode's p50 and p99 (the median over rounds) and the ratios to passthrough,
//     next to the raw cost of a FerretDB point read and upsert measured in the same rounds.
//  2. Rollback propagation: two proxies, each with its own flag provider polling one catalog.
//     Per flip: cutover (gates and all), then flags.Manager.Rollback, timed until both proxies
//     answer a point read from the old store instead of the new one.
//
// Everything runs in this process on 127.0.0.1 and the program stops by itself.
//
//	go run ./bench/phasebench [-duration 1.5s] [-rounds 5] [-clients 1,8] [-flips 50] [-flags-poll 100ms,50ms]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/tandemdb/tandem/bench/benchenv"
	"github.com/tandemdb/tandem/embedmongo"
)

var (
	flagDuration = flag.Duration("duration", 1500*time.Millisecond, "length of one measurement (one mode, one round)")
	flagRounds   = flag.Int("rounds", 5, "interleaved rounds per client count; each cell is the median over rounds")
	flagClients  = flag.String("clients", "1,8", "numbers of concurrent client goroutines (latency by phase)")
	flagWarmup   = flag.Duration("warmup", 300*time.Millisecond, "warm-up of each mode after its phase is in force, before it is measured")
	flagKeys     = flag.Int("keys", 100, "documents per client goroutine, written and read by _id")
	flagFlips    = flag.Int("flips", 50, "cutover → rollback flips per -flags-poll value (rollback propagation)")
	flagPolls    = flag.String("flags-poll", "100ms,50ms", "catalog poll intervals of the flag providers to measure rollback propagation with (cmd/tandem's default: 100ms)")
	flagParts    = flag.String("parts", "latency,rollback", "what to measure: latency (by phase), rollback (propagation)")
	flagTimeout  = flag.Duration("timeout", 15*time.Minute, "abort the whole run after this long")
	flagVerbose  = flag.Bool("v", false, "also print every round and every flip")
)

// tempDirs holds the data folders of running FerretDB servers, removed even on -timeout.
var tempDirs sync.Map

func main() {
	flag.Parse()
	clientCounts, err := benchenv.ParseInts(*flagClients)
	if err != nil {
		fatalf("-clients: %v", err)
	}
	var polls []time.Duration
	for _, f := range benchenv.SplitList(*flagPolls) {
		d, err := time.ParseDuration(f)
		if err != nil || d < 10*time.Millisecond || d > time.Minute {
			fatalf("-flags-poll: %q: want durations from 10ms to 1m", f)
		}
		polls = append(polls, d)
	}
	if *flagRounds < 1 || *flagDuration <= 0 || *flagKeys < 1 || *flagFlips < 1 {
		fatalf("-rounds, -keys and -flips must be at least 1 and -duration positive")
	}
	parts := benchenv.SplitList(*flagParts)
	for _, p := range parts {
		if p != "latency" && p != "rollback" {
			fatalf("-parts: unknown part %q (latency, rollback)", p)
		}
	}
	time.AfterFunc(*flagTimeout, func() {
		fmt.Fprintf(os.Stderr, "phasebench: aborted after -timeout %s\n", *flagTimeout)
		tempDirs.Range(func(dir, _ any) bool { os.RemoveAll(dir.(string)); return true })
		os.Exit(2)
	})

	printHeader()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	ferret, err := embedmongo.Start(ctx, embedmongo.Options{})
	cancel()
	if err != nil {
		fatalf("starting FerretDB: %v", err)
	}
	tempDirs.Store(ferret.Dir(), true)
	defer func() { ferret.Stop(); tempDirs.Delete(ferret.Dir()) }()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	start := time.Now()
	if slices.Contains(parts, "latency") {
		if err := runLatency(ferret.URI(), clientCounts, quiet); err != nil {
			fmt.Fprintf(os.Stderr, "phasebench: latency by phase: %v\n", err)
			ferret.Stop()
			os.Exit(1)
		}
	}
	if slices.Contains(parts, "rollback") {
		if err := runRollback(ferret.URI(), polls, quiet); err != nil {
			fmt.Fprintf(os.Stderr, "phasebench: rollback propagation: %v\n", err)
			ferret.Stop()
			os.Exit(1)
		}
	}
	fmt.Printf("Total run time: %s; load average at the end %s.\n", time.Since(start).Round(time.Second), benchenv.LoadAvg())
}

func printHeader() {
	fmt.Println("# tandem phase benchmark")
	fmt.Println()
	fmt.Printf("- Command: `%s`\n", benchenv.CommandLine("./bench/phasebench"))
	fmt.Printf("- Machine: nproc %d (GOMAXPROCS %d), CPU %s, %s/%s, kernel %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), benchenv.CPUModel(), runtime.GOOS, runtime.GOARCH, benchenv.Kernel())
	fmt.Printf("- Go: %s; tandem commit %s\n", runtime.Version(), benchenv.GitCommit())
	fmt.Printf("- Settings: -duration %s -rounds %d -warmup %s -clients %s -keys %d -flips %d -flags-poll %s -parts %s\n",
		*flagDuration, *flagRounds, *flagWarmup, *flagClients, *flagKeys, *flagFlips, *flagPolls, *flagParts)
	fmt.Printf("- Started: %s, load average %s\n", time.Now().UTC().Format(time.RFC3339), benchenv.LoadAvg())
	fmt.Println()
}

// median of the values; 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "phasebench: "+format+"\n", args...)
	os.Exit(1)
}
