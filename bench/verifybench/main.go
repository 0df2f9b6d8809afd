// Command verifybench measures verification's full pass (verify.Run) against raw loops that read
// both stores the same way and compare nothing, side by side in one run, on a converged
// migration of the users-v2 example: MongoDB (an embedded FerretDB, SQLite) → DynamoDB (moto,
// a separate Python process), and MongoDB → MongoDB (two collections of the FerretDB).
//
// For each target, per round and in alternating order:
//
//   - full pass: verify.Run with its defaults but -partitions, -batch and -concurrency, in a
//     fresh catalog (on the FerretDB), which must come back clean with every key compared.
//     By default (-plan "") MongoDB → DynamoDB joins: every old partition and every table
//     segment scanned once, a digest per document spilled to local disk and the buckets
//     joined; MongoDB → MongoDB merges two ordered scans. -plan lookup makes the full pass
//     look each batch's keys up in the other store instead (verify.PlanLookup).
//   - raw scan + look-ups (DynamoDB only): the reads of the look-up plan, through the same
//     adapters, on -concurrency goroutines: each old partition scanned with each batch's keys
//     looked up in the table (BatchGetItem), then each table segment scanned with each batch's
//     keys looked up in the collection.
//   - raw dual scan: every partition of both stores scanned once, nothing looked up (the old
//     store's partitions for both on MongoDB → MongoDB, as BenchmarkFullPass does; the table's
//     own segments on DynamoDB), on -concurrency goroutines.
//
// docs/s is the old store's documents over the wall time; the medians are printed with each
// path ÷ the raw dual scan and ÷ the raw scan + look-ups.
//
//	go run ./bench/verifybench [-docs 10000] [-rounds 3] [-targets dynamodb,mongodb]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/bench/benchenv"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/verify"
)

var (
	flagDocs        = flag.Int("docs", 10000, "documents of the converged migration (each target)")
	flagRounds      = flag.Int("rounds", 3, "rounds per target; the paths alternate and the medians are reported")
	flagTargets     = flag.String("targets", "dynamodb,mongodb", "targets to measure: dynamodb, mongodb")
	flagPartitions  = flag.Int("partitions", verify.DefaultPartitions, "verify.Config.Partitions, and the raw loops' partitions")
	flagBatch       = flag.Int("batch", verify.DefaultBatch, "verify.Config.Batch, and the raw loops' batch")
	flagConcurrency = flag.Int("concurrency", verify.DefaultConcurrency, "verify.Config.Concurrency, and the raw loops' goroutines")
	flagPlan        = flag.String("plan", verify.PlanAuto, "verify.Config.Plan of the full pass: merge, join, lookup, or empty for the default")
	flagTimeout     = flag.Duration("timeout", 30*time.Minute, "abort the whole run after this long")
	flagDir         = flag.String("dir", "", "the FerretDB's SQLite folder (default: a temporary one, removed at the end); a tmpfs folder such as /dev/shm/verifybench takes the disk out")
	flagLog         = flag.Bool("log", false, "print the verifier's log (info and above) to stderr, with times")
	flagCPUProfile  = flag.String("cpuprofile", "", "write a CPU profile of the first full pass (of the first target) to this file; the stores' FerretDB runs in this process and is profiled too")
)

func main() {
	flag.Parse()
	targets := benchenv.SplitList(*flagTargets)
	for _, t := range targets {
		if t != "dynamodb" && t != "mongodb" {
			fatalf("-targets: unknown target %q (dynamodb, mongodb)", t)
		}
	}
	if *flagDocs < 1 || *flagRounds < 1 || *flagPartitions < 1 || *flagBatch < 1 || *flagConcurrency < 1 {
		fatalf("-docs, -rounds, -partitions, -batch and -concurrency must be positive")
	}
	time.AfterFunc(*flagTimeout, func() {
		fmt.Fprintf(os.Stderr, "verifybench: aborted after -timeout %s\n", *flagTimeout)
		os.Exit(2)
	})
	if err := run(targets); err != nil {
		fatalf("%v", err)
	}
}

func run(targets []string) error {
	ctx := context.Background()
	benchenv.PrintHeader("verifybench", "./bench/verifybench", fmt.Sprintf("-docs %d -rounds %d -targets %s -partitions %d -batch %d -concurrency %d -dir %q",
		*flagDocs, *flagRounds, strings.Join(targets, ","), *flagPartitions, *flagBatch, *flagConcurrency, *flagDir))

	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ferret, err := embedmongo.Start(sctx, embedmongo.Options{Dir: *flagDir})
	if err != nil {
		return fmt.Errorf("starting FerretDB: %w", err)
	}
	defer ferret.Stop()
	client, err := mongo.Connect(options.Client().ApplyURI(ferret.URI()))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	b := &bench{client: client, calls: &calls{}}
	defer b.close()
	if b.catalog, err = mongo.Connect(options.Client().ApplyURI(ferret.URI()).SetMonitor(b.calls.monitor())); err != nil {
		return err
	}
	defer func() { _ = b.catalog.Disconnect(context.Background()) }()
	for _, t := range targets {
		var fx *fixture
		switch t {
		case "dynamodb":
			moto, err := testenv.StartMoto(sctx)
			if err != nil {
				return fmt.Errorf("moto (run make clients): %w", err)
			}
			b.moto = moto
			fx, err = b.dynamoFixture(ctx, *flagDocs)
			if err != nil {
				return fmt.Errorf("dynamodb: %w", err)
			}
		case "mongodb":
			if fx, err = b.mongoFixture(ctx, *flagDocs); err != nil {
				return fmt.Errorf("mongodb: %w", err)
			}
		}
		if err := b.measure(ctx, fx, *flagRounds); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
	}
	fmt.Printf("\n# load average at the end: %s\n", benchenv.LoadAvg())
	return nil
}

// path is one way of reading a fixture's stores.
type path struct {
	name string
	run  func(ctx context.Context, fx *fixture) (time.Duration, error)
}

// measure times the fixture's paths in alternating order, rounds times, and prints the table.
func (b *bench) measure(ctx context.Context, fx *fixture, rounds int) error {
	fmt.Printf("\n## %s: %d documents, seeded in %s\n\n", fx.name, fx.docs, fx.seeded.Round(time.Millisecond))
	paths := []path{{"full pass", b.fullPass}}
	if fx.lookups {
		paths = append(paths, path{"raw scan + look-ups", rawLookups})
	}
	paths = append(paths, path{"raw dual scan", rawDualScan})
	rates := make([][]float64, len(paths))
	for r := range rounds {
		order := make([]int, len(paths))
		for i := range order {
			order[i] = i
		}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, i := range order {
			d, err := paths[i].run(ctx, fx)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, paths[i].name, err)
			}
			rate := float64(fx.docs) / d.Seconds()
			rates[i] = append(rates[i], rate)
			fmt.Printf("# round %d, %s: %s docs/s (%s)\n", r+1, paths[i].name, benchenv.Ops(rate), d.Round(time.Millisecond))
		}
	}
	// Each ratio twice: of the medians, and the median of the rounds' ratios (a round's paths
	// run back to back, so their ratio is less swayed by the load drifting between rounds).
	ratio := func(i, base int) string {
		per := make([]float64, len(rates[i]))
		for k, v := range rates[i] {
			per[k] = v / rates[base][k]
		}
		return fmt.Sprintf("%.2f (%.2f)", benchenv.Median(rates[i])/benchenv.Median(rates[base]), benchenv.Median(per))
	}
	fmt.Println()
	fmt.Println("| path | docs/s (median) | rounds | ÷ raw dual scan | ÷ raw scan + look-ups |")
	fmt.Println("|---|---:|---|---:|---:|")
	for i, p := range paths {
		all := make([]string, len(rates[i]))
		for k, v := range rates[i] {
			all[k] = benchenv.Ops(v)
		}
		vsLookups := "–"
		if fx.lookups {
			vsLookups = ratio(i, 1)
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", p.name, benchenv.Ops(benchenv.Median(rates[i])), strings.Join(all, ", "),
			ratio(i, len(paths)-1), vsLookups)
	}
	fmt.Println("\nRatios: of the medians, and in parentheses the median of the rounds' ratios.")
	return nil
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "verifybench: "+format+"\n", args...)
	os.Exit(1)
}
