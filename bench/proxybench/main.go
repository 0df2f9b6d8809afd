// Command proxybench measures, in one run and against the same upstream, a MongoDB client's
// round trips (a point read and a small insert) three ways: straight to the upstream, through a
// raw TCP byte forwarder (the floor for any proxy), and through tandem. The paths are measured
// in interleaved rounds and the median of the rounds is reported, so that the noise of a small
// shared machine falls on all three alike. Everything runs on 127.0.0.1 and the program stops
// by itself.
//
//	go run ./bench/proxybench [-duration 1s] [-rounds 3] [-upstreams fake,ferretdb] [-clients 1,16,64]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/bench/benchenv"
	"github.com/tandemdb/tandem/bench/cputime"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/proxy"
	"github.com/tandemdb/tandem/proxy/proxytest"
)

var (
	flagDuration  = flag.Duration("duration", time.Second, "length of one measurement (one path, one round)")
	flagRounds    = flag.Int("rounds", 3, "interleaved rounds per (upstream, op, clients); the median round is reported")
	flagUpstreams = flag.String("upstreams", "fake,ferretdb", "upstreams to measure: fake (proxytest.StartFake), ferretdb (embedded FerretDB on SQLite)")
	flagClients   = flag.String("clients", "1,16,64", "numbers of concurrent client goroutines")
	flagOps       = flag.String("ops", "find,insert", "operations: find (FindOne by an existing string _id), insert (InsertOne of a ~100-byte document)")
	flagWarmup    = flag.Duration("warmup", 300*time.Millisecond, "warm-up of each path before each (upstream, op, clients) combination")
	flagTimeout   = flag.Duration("timeout", 15*time.Minute, "abort the whole run after this long")
	flagVerbose   = flag.Bool("v", false, "also print every round's numbers")
)

const (
	dbName   = "tandem_bench"
	collName = "items"
	pointID  = "tandem-bench-point-read"
)

// The three ways to reach the upstream, in the order of the table.
var pathNames = []string{"direct", "forwarder", "tandem"}

// path is one way to reach the upstream, with its own driver client.
type path struct {
	name   string
	addr   string
	client *mongo.Client
	coll   *mongo.Collection
	seq    atomic.Uint64 // insert _id counter
}

// upstreamEnv is one upstream with its forwarder and tandem in front of it.
type upstreamEnv struct {
	name    string
	paths   []*path
	closers []func()
}

func (e *upstreamEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// result is one measurement.
type result struct {
	p50, p99 time.Duration
	opsPerS  float64
	cpuPerOp time.Duration // process CPU (user + system) per operation: client, paths and upstream
	n        int           // operations completed (in the window and after it)
	errs     int
	firstErr error
}

// row is the median of a path's rounds.
type row struct {
	upstream, op string
	clients      int
	path         string
	p50, p99     time.Duration
	opsPerS      float64
	cpuPerOp     time.Duration
	n            int
	errs         int
	rounds       []result
}

type opFunc func(ctx context.Context, p *path) error

var (
	pointFilter = bson.D{{Key: "_id", Value: pointID}}
	insertPad   = strings.Repeat("x", 40)
)

func findOp(ctx context.Context, p *path) error {
	return p.coll.FindOne(ctx, pointFilter).Err()
}

// insertOp inserts {_id: "<d|f|t>-<20 digits>", n: <int64>, pad: <40 bytes>}, a 98-byte
// document with an _id no other path uses.
func insertOp(ctx context.Context, p *path) error {
	n := p.seq.Add(1)
	id := fmt.Sprintf("%s-%020d", p.name[:1], n)
	_, err := p.coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "n", Value: int64(n)}, {Key: "pad", Value: insertPad}})
	return err
}

var ops = map[string]opFunc{"find": findOp, "insert": insertOp}

// tempDirs holds the data folders of running FerretDB servers, removed even on -timeout.
var tempDirs sync.Map

func main() {
	flag.Parse()
	clientCounts, err := benchenv.ParseInts(*flagClients)
	if err != nil {
		fatalf("-clients: %v", err)
	}
	if *flagRounds < 1 || *flagDuration <= 0 {
		fatalf("-rounds must be at least 1 and -duration positive")
	}
	upstreams := benchenv.SplitList(*flagUpstreams)
	for _, u := range upstreams {
		if u != "fake" && u != "ferretdb" {
			fatalf("-upstreams: unknown upstream %q (fake, ferretdb)", u)
		}
	}
	opNames := benchenv.SplitList(*flagOps)
	for _, o := range opNames {
		if ops[o] == nil {
			fatalf("-ops: unknown op %q (find, insert)", o)
		}
	}
	time.AfterFunc(*flagTimeout, func() {
		fmt.Fprintf(os.Stderr, "proxybench: aborted after -timeout %s\n", *flagTimeout)
		tempDirs.Range(func(dir, _ any) bool { os.RemoveAll(dir.(string)); return true })
		os.Exit(2)
	})

	printHeader()
	maxClients := slices.Max(clientCounts)
	var rows []row
	start := time.Now()
	for _, u := range upstreams {
		env, err := setup(u, maxClients)
		if err != nil {
			fatalf("%s: %v", u, err)
		}
		// Open every path's pool to its full size once, then warm up again before each
		// combination below.
		for _, p := range env.paths {
			measure(p, findOp, maxClients, 2**flagWarmup)
		}
		for _, o := range opNames {
			for _, c := range clientCounts {
				rows = append(rows, compare(env, o, c)...)
			}
		}
		env.close()
	}
	fmt.Printf("Total run time: %s; load average at the end %s.\n\n", time.Since(start).Round(time.Second), benchenv.LoadAvg())
	printTable(rows)
	if *flagVerbose {
		printRounds(rows)
	}
}

// compare measures the three paths for one (upstream, op, clients) combination: a warm-up of
// each, then -rounds rounds in which each path runs once, in an order that rotates every round.
func compare(env *upstreamEnv, opName string, clients int) []row {
	op := ops[opName]
	for _, p := range env.paths {
		measure(p, op, clients, *flagWarmup)
	}
	byPath := make([][]result, len(env.paths))
	for r := range *flagRounds {
		for k := range env.paths {
			i := (r + k) % len(env.paths)
			runtime.GC()
			res := measure(env.paths[i], op, clients, *flagDuration)
			if res.errs > 0 {
				fmt.Fprintf(os.Stderr, "  %s %s c=%d %s: %d errors, first: %v\n", env.name, opName, clients, env.paths[i].name, res.errs, res.firstErr)
			}
			byPath[i] = append(byPath[i], res)
		}
	}
	rows := make([]row, len(env.paths))
	for i, p := range env.paths {
		rs := byPath[i]
		rows[i] = row{
			upstream: env.name, op: opName, clients: clients, path: p.name,
			p50:      time.Duration(median(rs, func(r result) float64 { return float64(r.p50) })),
			p99:      time.Duration(median(rs, func(r result) float64 { return float64(r.p99) })),
			opsPerS:  median(rs, func(r result) float64 { return r.opsPerS }),
			cpuPerOp: time.Duration(median(rs, func(r result) float64 { return float64(r.cpuPerOp) })),
			n:        int(median(rs, func(r result) float64 { return float64(r.n) })),
			rounds:   rs,
		}
		for _, r := range rs {
			rows[i].errs += r.errs
		}
	}
	fmt.Fprintf(os.Stderr, "%-8s %-6s clients=%-3d", env.name, opName, clients)
	for _, r := range rows {
		fmt.Fprintf(os.Stderr, "  %s p50=%s ops/s=%.0f", r.path, benchenv.Dur(r.p50), r.opsPerS)
	}
	fmt.Fprintln(os.Stderr)
	return rows
}

// measure runs op from clients goroutines for d. Every operation started before the deadline
// is timed; throughput counts the operations that completed within the window.
func measure(p *path, op opFunc, clients int, d time.Duration) result {
	ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Minute)
	defer cancel()
	lat := make([][]time.Duration, clients)
	inWindow := make([]int, clients)
	errs := make([]int, clients)
	firstErrs := make([]error, clients)
	var wg sync.WaitGroup
	cpu0, _ := cputime.Process()
	start := time.Now()
	deadline := start.Add(d)
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 8192)
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				err := op(ctx, p)
				t1 := time.Now()
				if err != nil {
					if errs[g] == 0 {
						firstErrs[g] = err
					}
					errs[g]++
					if ctx.Err() != nil {
						break
					}
					continue
				}
				l = append(l, t1.Sub(t0))
				if t1.Before(deadline) {
					inWindow[g]++
				}
			}
			lat[g] = l
		}()
	}
	wg.Wait()
	cpu1, cpuOK := cputime.Process()
	var all []time.Duration
	res := result{}
	for g := range clients {
		all = append(all, lat[g]...)
		res.opsPerS += float64(inWindow[g])
		res.errs += errs[g]
		if res.firstErr == nil {
			res.firstErr = firstErrs[g]
		}
	}
	res.opsPerS /= d.Seconds()
	res.n = len(all)
	if cpuOK && res.n > 0 {
		res.cpuPerOp = (cpu1 - cpu0) / time.Duration(res.n)
	}
	slices.Sort(all)
	res.p50 = benchenv.Percentile(all, 0.50)
	res.p99 = benchenv.Percentile(all, 0.99)
	return res
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// setup starts an upstream, a forwarder and tandem in front of it, one driver client per path,
// and seeds the point-read document.
func setup(name string, maxClients int) (*upstreamEnv, error) {
	env := &upstreamEnv{name: name}
	var upAddr string
	switch name {
	case "fake":
		f, err := proxytest.StartFake()
		if err != nil {
			return nil, err
		}
		env.closers = append(env.closers, f.Close)
		upAddr = f.Addr()
	case "ferretdb":
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s, err := embedmongo.Start(ctx, embedmongo.Options{})
		cancel()
		if err != nil {
			return nil, err
		}
		tempDirs.Store(s.Dir(), true)
		env.closers = append(env.closers, func() { s.Stop(); tempDirs.Delete(s.Dir()) })
		upAddr = hostPort(s.URI())
	}
	fwd, err := startForwarder(upAddr)
	if err != nil {
		env.close()
		return nil, err
	}
	env.closers = append(env.closers, fwd.Close)

	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	up, err := proxy.NewUpstream("mongodb://"+upAddr+"/", proxy.WithUpstreamLogger(quiet))
	if err != nil {
		env.close()
		return nil, err
	}
	env.closers = append(env.closers, func() { _ = up.Close(context.Background()) })
	srv := proxy.NewServer(up, proxy.WithLogger(quiet), proxy.WithMetrics(proxy.NewMetrics(nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		env.close()
		return nil, err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	env.closers = append(env.closers, func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, proxy.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "tandem: %v\n", err)
		}
	})

	for _, pn := range pathNames {
		addr := map[string]string{"direct": upAddr, "forwarder": fwd.Addr(), "tandem": ln.Addr().String()}[pn]
		// retryWrites=false so that every path sends the same insert command: through tandem the
		// driver sees a router and would otherwise add a txnNumber.
		co := options.Client().ApplyURI("mongodb://" + addr + "/").
			SetMaxPoolSize(uint64(maxClients)).
			SetRetryWrites(false)
		client, err := mongo.Connect(co)
		if err != nil {
			env.close()
			return nil, fmt.Errorf("%s client: %w", pn, err)
		}
		env.closers = append(env.closers, func() { _ = client.Disconnect(context.Background()) })
		env.paths = append(env.paths, &path{name: pn, addr: addr, client: client, coll: client.Database(dbName).Collection(collName)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = env.paths[0].coll.InsertOne(ctx, bson.D{{Key: "_id", Value: pointID}, {Key: "n", Value: int64(0)}, {Key: "pad", Value: insertPad}})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		env.close()
		return nil, fmt.Errorf("seeding: %w", err)
	}
	for _, p := range env.paths {
		if err := findOp(ctx, p); err != nil {
			env.close()
			return nil, fmt.Errorf("%s: point read after seeding: %w", p.name, err)
		}
	}
	return env, nil
}

func hostPort(uri string) string {
	s := strings.TrimPrefix(uri, "mongodb://")
	if i := strings.IndexAny(s, "/?"); i >= 0 {
		s = s[:i]
	}
	return s
}

func printHeader() {
	fmt.Println("# tandem proxy benchmark")
	fmt.Println()
	fmt.Printf("- Command: `%s`\n", benchenv.CommandLine("./bench/proxybench"))
	fmt.Printf("- Machine: nproc %d (GOMAXPROCS %d), CPU %s, %s/%s, kernel %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), benchenv.CPUModel(), runtime.GOOS, runtime.GOARCH, benchenv.Kernel())
	fmt.Printf("- Go: %s; tandem commit %s\n", runtime.Version(), benchenv.GitCommit())
	fmt.Printf("- Settings: -duration %s -rounds %d -warmup %s -upstreams %s -clients %s -ops %s\n",
		*flagDuration, *flagRounds, *flagWarmup, *flagUpstreams, *flagClients, *flagOps)
	fmt.Printf("- Started: %s, load average %s\n", time.Now().UTC().Format(time.RFC3339), benchenv.LoadAvg())
	fmt.Println()
	fmt.Println("Paths: direct = driver → upstream; forwarder = driver → raw TCP io.Copy forwarder → upstream;")
	fmt.Println("tandem = driver → proxy.Server → upstream. One mongo.Client per path (maxPoolSize = the largest")
	fmt.Println("client count, retryWrites=false), all on 127.0.0.1. Each (upstream, op, clients) combination:")
	fmt.Println("a warm-up of every path, then rounds in which each path runs once for -duration, in an order")
	fmt.Println("rotating every round; each cell is the median of the rounds. p50/p99 are per round trip;")
	fmt.Println("ops/s counts operations completed within the window. CPU/op is the CPU time (user + system)")
	fmt.Println("of this whole process — driver, forwarder, tandem and the upstream, all in-process — per")
	fmt.Println("operation, so the difference from direct is a path's CPU cost.")
	fmt.Println()
}

func printTable(rows []row) {
	fmt.Println("| upstream | op | clients | path | p50 | p99 | ops/s | CPU/op | ops/round | tandem added p50 ÷ forwarder added p50 | tandem/forwarder ops/s | tandem/direct ops/s | tandem added CPU/op ÷ forwarder added CPU/op |")
	fmt.Println("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for i := 0; i+2 < len(rows); i += 3 {
		d, f, t := rows[i], rows[i+1], rows[i+2]
		for _, r := range []row{d, f, t} {
			var added, tf, td, cpu string
			if r.path == "tandem" {
				added = addedRatio(t.p50-d.p50, f.p50-d.p50)
				tf = fmt.Sprintf("%.3f", t.opsPerS/f.opsPerS)
				td = fmt.Sprintf("%.3f", t.opsPerS/d.opsPerS)
				cpu = addedRatio(t.cpuPerOp-d.cpuPerOp, f.cpuPerOp-d.cpuPerOp)
			}
			errNote := ""
			if r.errs > 0 {
				errNote = fmt.Sprintf(" (%d errors)", r.errs)
			}
			fmt.Printf("| %s | %s | %d | %s | %s | %s | %s | %s | %d%s | %s | %s | %s | %s |\n",
				r.upstream, r.op, r.clients, r.path, benchenv.Dur(r.p50), benchenv.Dur(r.p99), benchenv.Ops(r.opsPerS),
				benchenv.Dur(r.cpuPerOp), r.n, errNote, added, tf, td, cpu)
		}
	}
	fmt.Println()
}

// addedRatio formats what tandem adds over direct divided by what the forwarder adds, with
// both amounts; it is n/a when the forwarder adds nothing measurable.
func addedRatio(tandem, fwd time.Duration) string {
	if fwd <= 0 {
		return fmt.Sprintf("n/a (%s vs %s)", benchenv.Signed(tandem), benchenv.Signed(fwd))
	}
	return fmt.Sprintf("%.2f (%s vs %s)", float64(tandem)/float64(fwd), benchenv.Signed(tandem), benchenv.Signed(fwd))
}

func printRounds(rows []row) {
	fmt.Println("Every round, in the order run (p50 / p99 / ops/s / CPU/op):")
	fmt.Println()
	fmt.Println("| upstream | op | clients | path | rounds |")
	fmt.Println("|---|---|---:|---|---|")
	for _, r := range rows {
		var parts []string
		for _, x := range r.rounds {
			parts = append(parts, fmt.Sprintf("%s / %s / %s / %s", benchenv.Dur(x.p50), benchenv.Dur(x.p99), benchenv.Ops(x.opsPerS), benchenv.Dur(x.cpuPerOp)))
		}
		fmt.Printf("| %s | %s | %d | %s | %s |\n", r.upstream, r.op, r.clients, r.path, strings.Join(parts, "; "))
	}
	fmt.Println()
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "proxybench: "+format+"\n", args...)
	os.Exit(1)
}
