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
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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
	clientCounts, err := parseInts(*flagClients)
	if err != nil {
		fatalf("-clients: %v", err)
	}
	var polls []time.Duration
	for _, f := range splitList(*flagPolls) {
		d, err := time.ParseDuration(f)
		if err != nil || d < 10*time.Millisecond || d > time.Minute {
			fatalf("-flags-poll: %q: want durations from 10ms to 1m", f)
		}
		polls = append(polls, d)
	}
	if *flagRounds < 1 || *flagDuration <= 0 || *flagKeys < 1 || *flagFlips < 1 {
		fatalf("-rounds, -keys and -flips must be at least 1 and -duration positive")
	}
	parts := splitList(*flagParts)
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
	fmt.Printf("Total run time: %s; load average at the end %s.\n", time.Since(start).Round(time.Second), loadAvg())
}

func printHeader() {
	fmt.Println("# tandem phase benchmark")
	fmt.Println()
	fmt.Printf("- Command: `%s`\n", commandLine())
	fmt.Printf("- Machine: nproc %d (GOMAXPROCS %d), CPU %s, %s/%s, kernel %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), cpuModel(), runtime.GOOS, runtime.GOARCH, kernel())
	fmt.Printf("- Go: %s; tandem commit %s\n", runtime.Version(), gitCommit())
	fmt.Printf("- Settings: -duration %s -rounds %d -warmup %s -clients %s -keys %d -flips %d -flags-poll %s -parts %s\n",
		*flagDuration, *flagRounds, *flagWarmup, *flagClients, *flagKeys, *flagFlips, *flagPolls, *flagParts)
	fmt.Printf("- Started: %s, load average %s\n", time.Now().UTC().Format(time.RFC3339), loadAvg())
	fmt.Println()
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
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

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
}

func fmtOps(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// commandLine reconstructs the command that started the program; under go run, os.Args[0] is
// a temporary binary.
func commandLine() string {
	args := make([]string, 0, len(os.Args))
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t'\"$`\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		args = append(args, a)
	}
	prog := os.Args[0]
	if strings.Contains(prog, "go-build") || strings.HasPrefix(filepath.Base(filepath.Dir(prog)), "exe") {
		prog = "go run ./bench/phasebench"
	}
	return strings.TrimSpace(prog + " " + strings.Join(args, " "))
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// loadAvg returns the 1, 5 and 15 minute load averages: other work on the machine skews results.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// gitCommit names the commit being measured, with -dirty when the work tree has changes.
func gitCommit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "phasebench: "+format+"\n", args...)
	os.Exit(1)
}
