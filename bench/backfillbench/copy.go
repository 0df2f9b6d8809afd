package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

// specTemplate is the migration: five forward steps like convergebench's. The target's
// address in the spec is not used (the stores are given); the backfill reads its key from it.
const specTemplate = `name: bench
source:
  mongodb: {uri: "mongodb://unused/", database: bench_src, collection: src}
target:
  %s
key:
  %s
forward:
  - rename: {from: name, to: profile.name}
  - move: {from: email, to: profile.email}
  - convert: {path: age, from: int32, to: int64}
  - set: {path: schema_version, value: 2}
  - compute: {path: email_domain, expr: 'doc.profile.email.split("@")[1]'}
`

func mongoSpec() (*transform.Spec, error) {
	return transform.Parse("bench.yaml", []byte(fmt.Sprintf(specTemplate,
		`mongodb: {uri: "mongodb://unused/", database: bench_dst, collection: dst}`, "source: _id")))
}

func dynamoSpec(table string) (*transform.Spec, error) {
	return transform.Parse("bench.yaml", []byte(fmt.Sprintf(specTemplate,
		`dynamodb: {table: `+table+`, region: us-east-1}`, "partition: pk")))
}

func batchSize() int {
	if *flagBatch > 0 {
		return *flagBatch
	}
	return backfill.DefaultBatch
}

var runSeq atomic.Int64

// backfillRun is one backfill's config, on a catalog database of its own that drop removes.
type backfillRun struct {
	cfg  backfill.Config
	reg  *prometheus.Registry
	drop func()
}

// newBackfill wires a backfill from the source collection src to dst with a fresh catalog and
// migration name; rate > 0 sets Config.Rate.
func (b *bench) newBackfill(ctx context.Context, src string, dst adapters.Store, spec *transform.Spec, rate float64) (*backfillRun, error) {
	n := runSeq.Add(1)
	metaDB := fmt.Sprintf("bench_meta_%d", n)
	cat, err := catalog.Open(ctx, b.client, catalog.WithDatabase(metaDB))
	if err != nil {
		return nil, err
	}
	old := adapters.NewMongoStore(b.client.Database(srcDB).Collection(src))
	migration := fmt.Sprintf("bench-%d", n)
	engine, err := shadow.NewEngine(shadow.Config{
		Migration: migration, SpecVersion: spec.Version, Old: old, New: dst,
		Forward: spec.Forward, DeadLetters: cat, Log: quiet,
	})
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	return &backfillRun{
		cfg: backfill.Config{
			Migration: migration, Spec: spec, Old: old, New: dst, Catalog: cat,
			Reconverge: func(ctx context.Context, k adapters.Key) error {
				_, err := engine.Converge(ctx, k, shadow.Forward)
				return err
			},
			Workers: *flagWorkers, Batch: *flagBatch, Rate: rate, Log: quiet, Metrics: backfill.NewMetrics(reg),
		},
		reg:  reg,
		drop: func() { _ = b.client.Database(metaDB).Drop(context.Background()) },
	}, nil
}

// writeSeconds is the sum of the backfill's BulkWrite durations over its workers, from its
// tandem_backfill_write_duration_seconds histogram.
func (r *backfillRun) writeSeconds() float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "tandem_backfill_write_duration_seconds" {
			for _, m := range mf.GetMetric() {
				return m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0
}

// rawMongo copies src to dst as a hand-written copier does: one cursor read in batches, each
// document transformed, each batch written with one InsertMany (or, with upsert, unordered
// BulkWrites of ReplaceOne upserts, 25 a command, as MongoStore writes to FerretDB).
func rawMongo(ctx context.Context, src, dst *mongo.Collection, spec *transform.Spec, upsert bool) (int, error) {
	flush := func(docs []any) error {
		if !upsert {
			_, err := dst.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
			return err
		}
		models := make([]mongo.WriteModel, len(docs))
		for i, d := range docs {
			d := d.(bson.D)
			models[i] = mongo.NewReplaceOneModel().SetFilter(bson.D{d[0]}).SetReplacement(d).SetUpsert(true)
		}
		for chunk := range slices.Chunk(models, 25) {
			if _, err := dst.BulkWrite(ctx, chunk, options.BulkWrite().SetOrdered(false)); err != nil {
				return err
			}
		}
		return nil
	}
	n := 0
	err := readBatches(ctx, src, spec, func(out []bson.D) error {
		docs := make([]any, len(out))
		for i, d := range out {
			docs[i] = d
		}
		n += len(docs)
		return flush(docs)
	})
	return n, err
}

// rawDynamo copies src to a DynamoDB table: the same reads and transforms, then BatchWriteItem
// in chunks of 25, one request at a time, resending unprocessed items.
func rawDynamo(ctx context.Context, src *mongo.Collection, ddb *dynamodb.Client, table string, spec *transform.Spec) (int, error) {
	n := 0
	err := readBatches(ctx, src, spec, func(out []bson.D) error {
		reqs := make([]types.WriteRequest, 0, len(out))
		for _, d := range out {
			item, err := adapters.MarshalItem(d)
			if err != nil {
				return err
			}
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
		}
		for chunk := range slices.Chunk(reqs, 25) {
			for len(chunk) > 0 {
				res, err := ddb.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: chunk}})
				if err != nil {
					return err
				}
				chunk = res.UnprocessedItems[table]
			}
		}
		n += len(out)
		return nil
	})
	return n, err
}

// readBatches reads src with one cursor in batches of batchSize() and hands each batch,
// transformed, to fn.
func readBatches(ctx context.Context, src *mongo.Collection, spec *transform.Spec, fn func([]bson.D) error) error {
	size := batchSize()
	cur, err := src.Find(ctx, bson.D{}, options.Find().SetBatchSize(int32(size)))
	if err != nil {
		return err
	}
	defer cur.Close(ctx)
	out := make([]bson.D, 0, size)
	for cur.Next(ctx) {
		var d bson.D
		if err := cur.Decode(&d); err != nil {
			return err
		}
		t, err := spec.Forward(d)
		if err != nil {
			return err
		}
		if out = append(out, t); len(out) == size {
			if err := fn(out); err != nil {
				return err
			}
			out = make([]bson.D, 0, size)
		}
	}
	if err := cur.Err(); err != nil {
		return err
	}
	if len(out) > 0 {
		return fn(out)
	}
	return nil
}

// pathResult is one path's measurements over the rounds.
type pathResult struct {
	name   string
	secs   []float64
	writes []float64 // backfill: BulkWrite seconds summed over workers
}

// measured runs one path once and returns its time; write is the backfill's write seconds.
type measured func(ctx context.Context, round int) (secs, write float64, err error)

// runThroughput measures the raw copies and the backfill, MongoDB → MongoDB at each of sizes
// and MongoDB → DynamoDB at dynamoDocs.
func (b *bench) runThroughput(ctx context.Context, sizes []int, dynamoDocs int) error {
	fmt.Println("## Throughput: backfill against a raw copy")
	fmt.Println()
	spec, err := mongoSpec()
	if err != nil {
		return err
	}
	type row struct {
		target string
		n      int
		paths  []*pathResult
	}
	var rows []row
	profiled := *flagCPUProfile == ""
	for _, n := range sizes {
		srcName, seedTime, err := b.source(ctx, n)
		if err != nil {
			return err
		}
		fmt.Printf("Seeded %d source documents in %s.\n", n, seedTime.Round(time.Millisecond))
		src := b.client.Database(srcDB).Collection(srcName)
		dst := b.client.Database(dstDB)
		raw := func(upsert bool) measured {
			return func(ctx context.Context, round int) (float64, float64, error) {
				coll := dst.Collection(fmt.Sprintf("raw_%d_%t_%d", n, upsert, round))
				defer func() { _ = coll.Drop(context.Background()) }()
				start := time.Now()
				got, err := rawMongo(ctx, src, coll, spec, upsert)
				secs := time.Since(start).Seconds()
				if err == nil {
					err = checkCount(ctx, coll, n, got)
				}
				return secs, 0, err
			}
		}
		bf := func(ctx context.Context, round int) (float64, float64, error) {
			coll := dst.Collection(fmt.Sprintf("bf_%d_%d", n, round))
			defer func() { _ = coll.Drop(context.Background()) }()
			run, err := b.newBackfill(ctx, srcName, adapters.NewMongoStore(coll), spec, 0)
			if err != nil {
				return 0, 0, err
			}
			defer run.drop()
			if !profiled {
				f, err := os.Create(*flagCPUProfile)
				if err != nil {
					return 0, 0, err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return 0, 0, err
				}
				defer pprof.StopCPUProfile()
				profiled = true
			}
			start := time.Now()
			sum, err := backfill.Run(ctx, run.cfg)
			secs := time.Since(start).Seconds()
			if err == nil {
				err = checkCount(ctx, coll, n, int(sum.Copied))
				fmt.Printf("    backfill: %d errors retried, %d keys re-converged, %d partitions\n", sum.Progress.Errors, sum.Reconverged, sum.Partitions)
			}
			return secs, run.writeSeconds(), err
		}
		names := []string{"raw copy (cursor, InsertMany)", "raw upsert copy (cursor, BulkWrite of ReplaceOne upserts, 25 a command)", "backfill (defaults)"}
		fns := []measured{raw(false), raw(true), bf}
		if !*flagRawUpsert {
			names, fns = slices.Delete(names, 1, 2), slices.Delete(fns, 1, 2)
		}
		paths, err := alternate(ctx, names, fns)
		if err != nil {
			return fmt.Errorf("mongodb, %d documents: %w", n, err)
		}
		rows = append(rows, row{"mongodb", n, paths})
		if err := b.probe(ctx, src, n); err != nil {
			return err
		}
	}
	if dynamoDocs > 0 {
		paths, err := b.dynamoThroughput(ctx, dynamoDocs)
		if err != nil {
			return fmt.Errorf("dynamodb, %d documents: %w", dynamoDocs, err)
		}
		rows = append(rows, row{"dynamodb", dynamoDocs, paths})
	}

	fmt.Println()
	fmt.Println("| target | docs | path | s (median) | docs/s (median) | backfill ÷ this path | backfill's BulkWrite s, summed over workers |")
	fmt.Println("|---|---:|---|---:|---:|---:|---:|")
	for _, r := range rows {
		bfSecs := median(r.paths[len(r.paths)-1].secs)
		for i, p := range r.paths {
			s := median(p.secs)
			ratio, writes := "", ""
			if i < len(r.paths)-1 {
				ratio = fmt.Sprintf("%.3f", s/bfSecs)
			} else {
				writes = fmt.Sprintf("%.1f", median(p.writes))
			}
			fmt.Printf("| %s | %d | %s | %.2f | %.0f | %s | %s |\n", r.target, r.n, p.name, s, float64(r.n)/s, ratio, writes)
		}
	}
	fmt.Println()
	fmt.Println("backfill ÷ this path is throughput(backfill) ÷ throughput(path), from the medians; the issue's target is ≥ 0.9 against the raw copy.")
	fmt.Println()
	return nil
}

// alternate runs the paths *flagRounds times, in turn and in reverse order every other round.
func alternate(ctx context.Context, names []string, paths []measured) ([]*pathResult, error) {
	res := make([]*pathResult, len(paths))
	for i, n := range names {
		res[i] = &pathResult{name: n}
	}
	for r := 0; r < *flagRounds; r++ {
		order := make([]int, len(paths))
		for i := range order {
			order[i] = i
		}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, i := range order {
			secs, write, err := paths[i](ctx, r)
			if err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", names[i], r+1, err)
			}
			fmt.Printf("  round %d: %s: %.2f s\n", r+1, names[i], secs)
			res[i].secs = append(res[i].secs, secs)
			res[i].writes = append(res[i].writes, write)
		}
	}
	return res, nil
}

func checkCount(ctx context.Context, coll *mongo.Collection, want, reported int) error {
	got, err := coll.CountDocuments(ctx, bson.D{})
	if err != nil {
		return err
	}
	if int(got) != want || reported != want {
		return fmt.Errorf("%s holds %d documents and the copy reported %d, want %d", coll.Name(), got, reported, want)
	}
	return nil
}

// probe times, on the source of n documents and a target of n, the single operations the
// backfill's batches are made of, to say where a batch's time goes on this server.
func (b *bench) probe(ctx context.Context, src *mongo.Collection, n int) error {
	batch := batchSize()
	spec, err := mongoSpec()
	if err != nil {
		return err
	}
	coll := b.client.Database(dstDB).Collection(fmt.Sprintf("probe_%d", n))
	defer func() { _ = coll.Drop(context.Background()) }()
	if _, err := rawMongo(ctx, src, coll, spec, false); err != nil {
		return err
	}
	mid := n / 2
	lo, hi := fmt.Sprintf("u%07d", mid), fmt.Sprintf("u%07d", min(mid+batch-1, n-1))
	timeIt := func(fn func() error) (time.Duration, error) {
		start := time.Now()
		err := fn()
		return time.Since(start), err
	}
	rng, err := timeIt(func() error { // the re-check's query
		cur, err := src.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: lo}, {Key: "$lte", Value: hi}}}},
			options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetBatchSize(int32(batch+1)))
		if err != nil {
			return err
		}
		var docs []bson.D
		return cur.All(ctx, &docs)
	})
	if err != nil {
		return err
	}
	point, err := timeIt(func() error { return src.FindOne(ctx, bson.D{{Key: "_id", Value: lo}}).Err() })
	if err != nil {
		return err
	}
	upserts, err := timeIt(func() error { // 25 new keys into a target of n documents
		models := make([]mongo.WriteModel, 25)
		for i := range models {
			k := fmt.Sprintf("z%07d", i)
			models[i] = mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: k}}).SetReplacement(bson.D{{Key: "_id", Value: k}, {Key: "v", Value: i}}).SetUpsert(true)
		}
		_, err := coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
		return err
	})
	if err != nil {
		return err
	}
	inserts, err := timeIt(func() error {
		docs := make([]any, 25)
		for i := range docs {
			docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("y%07d", i)}, {Key: "v", Value: i}}
		}
		_, err := coll.InsertMany(ctx, docs)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("  single operations at %d documents: range read of %d keys (the re-check's query) %s; point read by _id %s; 25 upserts of new keys in one BulkWrite %s; InsertMany of 25 %s\n",
		n, batch, rng.Round(time.Millisecond), point.Round(time.Microsecond*100), upserts.Round(time.Millisecond), inserts.Round(time.Millisecond))
	return nil
}

// dynamoThroughput is the throughput part's MongoDB → DynamoDB half: raw BatchWriteItem into
// a table created beforehand, and the backfill into a table it creates itself (on-demand).
func (b *bench) dynamoThroughput(ctx context.Context, n int) ([]*pathResult, error) {
	moto, err := b.startMoto(ctx)
	if err != nil {
		return nil, err
	}
	ddb := moto.DynamoDB()
	srcName, seedTime, err := b.source(ctx, n)
	if err != nil {
		return nil, err
	}
	fmt.Printf("Seeded %d source documents in %s (DynamoDB target).\n", n, seedTime.Round(time.Millisecond))
	src := b.client.Database(srcDB).Collection(srcName)
	deleteTable := func(table string) {
		_, _ = ddb.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	}
	raw := func(ctx context.Context, round int) (float64, float64, error) {
		table := testenv.UniqueName("raw")
		if err := testenv.CreateTable(ctx, ddb, testenv.Table{Name: table, Key: "pk"}); err != nil {
			return 0, 0, err
		}
		defer deleteTable(table)
		spec, err := dynamoSpec(table)
		if err != nil {
			return 0, 0, err
		}
		start := time.Now()
		got, err := rawDynamo(ctx, src, ddb, table, spec)
		secs := time.Since(start).Seconds()
		if err == nil && got != n {
			err = fmt.Errorf("copied %d, want %d", got, n)
		}
		return secs, 0, err
	}
	bf := func(ctx context.Context, round int) (float64, float64, error) {
		table := testenv.UniqueName("bf")
		defer deleteTable(table)
		spec, err := dynamoSpec(table)
		if err != nil {
			return 0, 0, err
		}
		dst, err := adapters.NewDynamoStore(ctx, table, "pk", adapters.DynamoClient(ddb))
		if err != nil {
			return 0, 0, err
		}
		run, err := b.newBackfill(ctx, srcName, dst, spec, 0)
		if err != nil {
			return 0, 0, err
		}
		defer run.drop()
		start := time.Now()
		sum, err := backfill.Run(ctx, run.cfg)
		secs := time.Since(start).Seconds()
		if err == nil && sum.Copied != int64(n) {
			err = fmt.Errorf("backfill copied %d, want %d", sum.Copied, n)
		}
		return secs, run.writeSeconds(), err
	}
	return alternate(ctx, []string{"raw copy (cursor, BatchWriteItem of 25)", "backfill (defaults)"}, []measured{raw, bf})
}

var errNoHWM = errors.New("no VmHWM in /proc/self/status")
