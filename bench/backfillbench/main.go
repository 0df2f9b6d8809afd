// Command backfillbench measures the backfill (package backfill) against a raw copy on the same
// stores, side by side in one run, and its memory and throttle:
//
//  1. throughput: MongoDB → MongoDB (two collections of one server) and MongoDB → DynamoDB
//     (moto). Per round, in alternating order: a raw copy (one cursor read in batches,
//     Spec.Forward on each document, then InsertMany, or BatchWriteItem in chunks of 25 with
//     unprocessed items resent), a raw upsert copy on MongoDB (the same, written as unordered
//     BulkWrites of ReplaceOne upserts in commands of 25: what the backfill's adapter sends to
//     FerretDB), and backfill.Run with its defaults into an empty target. Medians over the
//     rounds and backfill ÷ raw throughput.
//  2. rss: the backfill's peak resident memory, in a child process (this binary re-executed with
//     -child-rss), so the seeding and the embedded server do not count: VmHWM from
//     /proc/self/status at the end, VmRSS sampled every 50 ms, and the Go heap.
//  3. throttle: documents/s achieved against Config.Rate, on a source of rate × -throttle-secs
//     documents.
//
// MongoDB is FerretDB in a child process of its own (-store: postgresql, on a private
// PostgreSQL cluster made with the machine's initdb and pg_ctl, or sqlite) unless -uri names a
// server. FerretDB pushes neither range queries nor sorts down to its backend, so the queries
// the backfill sends (a partition's scan, the re-check of each batch) read the whole
// collection: see BENCHMARKS.md, section Backfill, for what that means.
//
//	go run ./bench/backfillbench [-store postgresql] [-docs 2000] [-dynamo-docs 1000] [-rounds 3] [-parts throughput,rss,throttle]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/bench/benchenv"
	"github.com/tandemdb/tandem/testenv"
)

var (
	flagURI        = flag.String("uri", "", "MongoDB to measure on (source and MongoDB target); default: FerretDB in a child process, on -store")
	flagStore      = flag.String("store", "postgresql", "FerretDB's backend when -uri is not given: postgresql (a private cluster; needs initdb and pg_ctl) or sqlite")
	flagDocs       = flag.String("docs", "2000", "source documents of the MongoDB → MongoDB throughput part (a list: each size is measured)")
	flagDynamoDocs = flag.Int("dynamo-docs", 1000, "source documents of the MongoDB → DynamoDB throughput part (moto: 4–8 ms a request); 0 skips it")
	flagRawUpsert  = flag.Bool("raw-upsert", true, "measure the raw upsert copy too (MongoDB target; on FerretDB each upsert reads the whole target)")
	flagRounds     = flag.Int("rounds", 3, "rounds per throughput size; the paths alternate and the medians are reported")
	flagRSSDocs    = flag.String("rss-docs", "1000,5000", "source sizes of the memory part (a list)")
	flagRates      = flag.String("rates", "50,200", "Config.Rate values of the throttle part, documents/s (a list)")
	flagThrTarget  = flag.String("throttle-target", "dynamodb", "target of the throttle part: dynamodb or mongodb")
	flagThrSecs    = flag.Float64("throttle-secs", 10, "length of each throttle measurement: the source holds rate × this many documents")
	flagWorkers    = flag.Int("workers", 0, "Config.Workers (0: the backfill's default)")
	flagBatch      = flag.Int("batch", 0, "Config.Batch, and the raw copy's batch (0: the backfill's default, 500)")
	flagParts      = flag.String("parts", "throughput,rss,throttle", "what to measure: throughput, rss, throttle")
	flagCPUProfile = flag.String("cpuprofile", "", "write a CPU profile of the first MongoDB → MongoDB backfill run to this file")
	flagTimeout    = flag.Duration("timeout", 60*time.Minute, "abort the whole run after this long")
	flagVerbose    = flag.Bool("v", false, "print the backfill's warnings (retries, dead letters) to stderr")
	flagChildRSS   = flag.Bool("child-rss", false, "internal: run one backfill as the memory part's child process")
	flagChildSrc   = flag.String("child-src", "", "internal: the child's source collection (database bench_src)")
	flagChildStore = flag.String("child-store", "", "internal: run FerretDB on this backend as the store process")
)

const (
	srcDB = "bench_src"
	dstDB = "bench_dst"
)

// quiet drops the backfill's logs (errors come back from Run), or with -v prints its warnings.
var quiet = slog.New(slog.DiscardHandler)

func main() {
	flag.Parse()
	if *flagVerbose {
		quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if *flagChildRSS {
		os.Exit(childRSS())
	}
	if *flagChildStore != "" {
		os.Exit(childStore(*flagChildStore))
	}
	docSizes, err := benchenv.ParseInts(*flagDocs)
	if err != nil {
		fatalf("-docs: %v", err)
	}
	rssSizes, err := benchenv.ParseInts(*flagRSSDocs)
	if err != nil {
		fatalf("-rss-docs: %v", err)
	}
	rates, err := benchenv.ParseInts(*flagRates)
	if err != nil {
		fatalf("-rates: %v", err)
	}
	parts := benchenv.SplitList(*flagParts)
	for _, p := range parts {
		if p != "throughput" && p != "rss" && p != "throttle" {
			fatalf("-parts: unknown part %q (throughput, rss, throttle)", p)
		}
	}
	if *flagRounds < 1 || *flagDynamoDocs < 0 || *flagThrSecs <= 0 {
		fatalf("-rounds must be at least 1, -dynamo-docs 0 or more, -throttle-secs positive")
	}
	if *flagThrTarget != "dynamodb" && *flagThrTarget != "mongodb" {
		fatalf("-throttle-target: %q is neither dynamodb nor mongodb", *flagThrTarget)
	}
	if *flagStore != "postgresql" && *flagStore != "sqlite" {
		fatalf("-store: %q is neither postgresql nor sqlite", *flagStore)
	}

	var store *storeProcess
	time.AfterFunc(*flagTimeout, func() {
		fmt.Fprintf(os.Stderr, "backfillbench: aborted after -timeout %s\n", *flagTimeout)
		store.stop()
		os.Exit(2)
	})
	printHeader()
	ctx := context.Background()
	uri := *flagURI
	if uri == "" {
		start := time.Now()
		if store, err = startStore(ctx, *flagStore); err != nil {
			fatalf("starting the store: %v", err)
		}
		defer store.stop()
		uri = store.uri
		fmt.Printf("Store up in %s.\n\n", time.Since(start).Round(time.Millisecond))
	}
	b := &bench{uri: uri}
	defer b.close()
	if b.client, err = mongo.Connect(options.Client().ApplyURI(uri)); err != nil {
		fatalf("connecting: %v", err)
	}
	_ = b.client.Database(srcDB).Drop(ctx)
	_ = b.client.Database(dstDB).Drop(ctx)

	start := time.Now()
	fail := func(part string, err error) {
		fmt.Fprintf(os.Stderr, "backfillbench: %s: %v\n", part, err)
		b.close()
		store.stop()
		os.Exit(1)
	}
	if slices.Contains(parts, "throughput") {
		if err := b.runThroughput(ctx, docSizes, *flagDynamoDocs); err != nil {
			fail("throughput", err)
		}
	}
	if slices.Contains(parts, "rss") {
		if err := b.runRSS(ctx, rssSizes); err != nil {
			fail("rss", err)
		}
	}
	if slices.Contains(parts, "throttle") {
		if err := b.runThrottle(ctx, rates); err != nil {
			fail("throttle", err)
		}
	}
	fmt.Printf("Total run time: %s; load average at the end %s.\n", time.Since(start).Round(time.Second), benchenv.LoadAvg())
}

// bench holds the servers and clients a run shares.
type bench struct {
	uri    string
	client *mongo.Client
	moto   *testenv.Moto
	seeded map[int]string // source collections by size
}

func (b *bench) close() {
	if b.moto != nil {
		b.moto.Stop()
		b.moto = nil
	}
	if b.client != nil {
		_ = b.client.Disconnect(context.Background())
		b.client = nil
	}
}

// startMoto starts moto once, on first use.
func (b *bench) startMoto(ctx context.Context) (*testenv.Moto, error) {
	if b.moto == nil {
		m, err := testenv.StartMoto(ctx)
		if err != nil {
			return nil, fmt.Errorf("moto (run make clients): %w", err)
		}
		b.moto = m
	}
	return b.moto, nil
}

// source returns a collection of database bench_src holding n documents, seeding it on first
// use with InsertMany of 1000 documents a command. Documents are small (about 150 bytes of
// BSON) with string keys u0000000…, sorted as they were inserted.
func (b *bench) source(ctx context.Context, n int) (string, time.Duration, error) {
	if name, ok := b.seeded[n]; ok {
		return name, 0, nil
	}
	name := fmt.Sprintf("src_%d", n)
	coll := b.client.Database(srcDB).Collection(name)
	start := time.Now()
	docs := make([]any, 0, 1000)
	for i := 0; i < n; i++ {
		docs = append(docs, bson.D{
			{Key: "_id", Value: fmt.Sprintf("u%07d", i)},
			{Key: "name", Value: fmt.Sprintf("User %d", i)},
			{Key: "email", Value: fmt.Sprintf("u%d@example.com", i)},
			{Key: "age", Value: int32(20 + i%50)},
			{Key: "city", Value: []string{"Lyon", "Porto", "Graz", "Turku"}[i%4]},
			{Key: "score", Value: float64(i%1000) / 10},
			{Key: "active", Value: i%3 != 0},
		})
		if len(docs) == cap(docs) || i == n-1 {
			if _, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
				return "", 0, fmt.Errorf("seeding %s: %w", name, err)
			}
			docs = docs[:0]
		}
	}
	if b.seeded == nil {
		b.seeded = map[int]string{}
	}
	b.seeded[n] = name
	return name, time.Since(start), nil
}

func printHeader() {
	fmt.Println("# tandem backfill benchmark")
	fmt.Println()
	fmt.Printf("- Command: `%s`\n", benchenv.CommandLine("./bench/backfillbench"))
	fmt.Printf("- Machine: nproc %d (GOMAXPROCS %d), CPU %s, %s/%s, kernel %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), benchenv.CPUModel(), runtime.GOOS, runtime.GOARCH, benchenv.Kernel())
	fmt.Printf("- Go: %s; tandem commit %s\n", runtime.Version(), benchenv.GitCommit())
	server := storeName(*flagStore)
	if *flagURI != "" {
		server = "-uri (given)"
	}
	fmt.Printf("- MongoDB: %s; DynamoDB: moto, a separate Python process\n", server)
	fmt.Printf("- Settings: -store %s -raw-upsert=%t -docs %s -dynamo-docs %d -rounds %d -rss-docs %s -rates %s -throttle-target %s -throttle-secs %g -workers %d -batch %d -parts %s\n",
		*flagStore, *flagRawUpsert, *flagDocs, *flagDynamoDocs, *flagRounds, *flagRSSDocs, *flagRates, *flagThrTarget, *flagThrSecs, *flagWorkers, *flagBatch, *flagParts)
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
	fmt.Fprintf(os.Stderr, "backfillbench: "+format+"\n", args...)
	os.Exit(1)
}
