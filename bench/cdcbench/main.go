// Command cdcbench measures change capture from a MongoDB change stream (package cdc) on
// mongo-java-server, the change-stream test server (testenv.StartMongoJava; `make mongojava`
// installs it), side by side in one run:
//
//  1. apply: the tailer's apply rate against a raw loop. Each measurement writes -docs inserts
//     straight into the old collection of a database of its own with the stream's position
//     taken first, then times how long the path takes to land them all in the new collection:
//     the tailer (cdc.ChangeStream into cdc.Tailer into shadow.Engine, as tandem run wires it,
//     its checkpoint saved after each batch), or a raw loop that reads the same stream with the
//     whole document and upserts each transformed document with one ReplaceOne. Rounds
//     alternate the two; medians and tailer ÷ raw are printed.
//  2. lag: the tailer follows the old collection while writers, paced together by one
//     golang.org/x/time/rate limiter at -rate writes/s, insert, update and delete documents for
//     -duration. Two views of the lag, both now minus an applied event's time (its wallTime,
//     which the tailer reads, else its clusterTime): Tailer.Lag sampled every -sample (the value
//     the tailer reports to the catalog and its metric, 0 when caught up), and, per change,
//     that difference at the moment its batch's checkpoint was saved. The rate the writers
//     reached is printed beside the one asked for. At the end the new collection must be the
//     transform of the old one.
//
// The stores are two collections of mongo-java-server (a separate JVM); the migration's catalog
// (checkpoints, lag) is on a FerretDB embedded in this process, as in the cdc tests. Before each
// measurement the server's oplog is trimmed (testenv.TrimOplog), so every measurement reads an
// oplog of its own size: the server scans its whole oplog on every getMore.
//
//	go run ./bench/cdcbench [-docs 2000] [-rounds 3] [-rate 500] [-duration 20s] [-lag-rounds 2]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/bench/benchenv"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/testenv"
)

var (
	flagDocs      = flag.Int("docs", 2000, "inserts per apply-rate measurement")
	flagRounds    = flag.Int("rounds", 3, "rounds of the apply part; the tailer and the raw loop alternate, medians are reported")
	flagRate      = flag.Float64("rate", 500, "writes/s of the lag part, paced by one limiter")
	flagWriters   = flag.Int("writers", 8, "goroutines of the lag part's writers, sharing the limiter (one write at a time each)")
	flagDuration  = flag.Duration("duration", 20*time.Second, "how long the lag part writes, per round")
	flagLagRounds = flag.Int("lag-rounds", 2, "rounds of the lag part")
	flagSample    = flag.Duration("sample", 10*time.Millisecond, "how often the lag part samples Tailer.Lag")
	flagPoll      = flag.Duration("poll", 0, "cdc.ChangeStreamConfig.Poll, the pause after a getMore that found nothing (0: its default, 100ms, as tandem run uses)")
	flagParts     = flag.String("parts", "apply,lag", "what to measure: apply, lag")
	flagTimeout   = flag.Duration("timeout", 30*time.Minute, "abort the whole run after this long")
)

func main() {
	flag.Parse()
	parts := benchenv.SplitList(*flagParts)
	for _, p := range parts {
		if p != "apply" && p != "lag" {
			fatalf("-parts: unknown part %q (apply, lag)", p)
		}
	}
	switch {
	case *flagDocs < 1 || *flagRounds < 1 || *flagLagRounds < 1 || *flagWriters < 1:
		fatalf("-docs, -rounds, -lag-rounds and -writers must be positive")
	case *flagRate <= 0 || *flagDuration <= 0 || *flagSample <= 0 || *flagPoll < 0:
		fatalf("-rate, -duration and -sample must be positive, -poll 0 or more")
	}
	time.AfterFunc(*flagTimeout, func() {
		fmt.Fprintf(os.Stderr, "cdcbench: aborted after -timeout %s\n", *flagTimeout)
		os.Exit(2)
	})
	if err := run(parts); err != nil {
		fatalf("%v", err)
	}
}

func run(parts []string) error {
	ctx := context.Background()
	benchenv.PrintHeader("cdcbench", "./bench/cdcbench", fmt.Sprintf("-docs %d -rounds %d -rate %g -writers %d -duration %s -lag-rounds %d -sample %s -poll %s",
		*flagDocs, *flagRounds, *flagRate, *flagWriters, *flagDuration, *flagLagRounds, *flagSample, pollName(*flagPoll)))

	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	mj, err := testenv.StartMongoJava(sctx, testenv.MongoJavaOptions{})
	if err != nil {
		return fmt.Errorf("mongo-java-server (run make mongojava): %w", err)
	}
	defer mj.Stop()
	ferret, err := embedmongo.Start(sctx, embedmongo.Options{})
	if err != nil {
		return fmt.Errorf("starting FerretDB for the catalog: %w", err)
	}
	defer ferret.Stop()
	b := &bench{poll: *flagPoll}
	if b.stores, err = mongo.Connect(options.Client().ApplyURI(mj.URI())); err != nil {
		return err
	}
	defer func() { _ = b.stores.Disconnect(context.Background()) }()
	if b.meta, err = mongo.Connect(options.Client().ApplyURI(ferret.URI())); err != nil {
		return err
	}
	defer func() { _ = b.meta.Disconnect(context.Background()) }()

	if slices.Contains(parts, "apply") {
		if err := b.applyPart(ctx, *flagDocs, *flagRounds); err != nil {
			return fmt.Errorf("apply: %w (the end of the server's log: %s)", err, logTail(mj.Log()))
		}
	}
	if slices.Contains(parts, "lag") {
		if err := b.lagPart(ctx); err != nil {
			return fmt.Errorf("lag: %w (the end of the server's log: %s)", err, logTail(mj.Log()))
		}
	}
	fmt.Printf("\n# load average at the end: %s\n", benchenv.LoadAvg())
	return nil
}

// logTail is the last 2000 bytes of a server's log.
func logTail(s string) string { return s[max(0, len(s)-2000):] }

func pollName(d time.Duration) string {
	if d == 0 {
		return "0 (100ms)"
	}
	return d.String()
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cdcbench: "+format+"\n", args...)
	os.Exit(1)
}
