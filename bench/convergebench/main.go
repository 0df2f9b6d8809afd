// Command convergebench measures batched converge against a hand-written copy loop on the same
// stores, side by side in one run: MongoDB → MongoDB (embedded FerretDB) and MongoDB → DynamoDB
// (moto). For each target it times, over the same source documents:
//
//   - raw single: for each document, transform it and upsert it with one driver call
//     (ReplaceOne with upsert, or PutItem);
//   - raw bulk: read a batch, transform it, write it with one bulk call (BulkWrite of
//     ReplaceOne upserts, or BatchWriteItem) — the best a hand-written copier does;
//   - converge: shadow.Engine.ConvergeBatch over the same batches into an empty target
//     (every key written), then again over a converged target (every key unchanged).
//
// Rounds alternate the paths and the target is emptied before each measurement; the medians
// across rounds are printed with the ratio converge / raw.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

const specTemplate = `name: bench
source:
  mongodb: {uri: "mongodb://unused/", database: bench, collection: src}
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

func main() {
	docs := flag.Int("docs", 2000, "source documents")
	batch := flag.Int("batch", 250, "documents per batch")
	rounds := flag.Int("rounds", 3, "rounds per path (medians are reported)")
	targets := flag.String("targets", "mongodb,dynamodb", "targets to measure")
	flag.Parse()
	if err := run(*docs, *batch, *rounds, strings.Split(*targets, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "convergebench:", err)
		os.Exit(1)
	}
}

type path struct {
	name string
	run  func(ctx context.Context) error
}

func run(nDocs, batchSize, rounds int, targets []string) error {
	ctx := context.Background()
	fmt.Printf("# convergebench: %d documents, batches of %d, %d rounds; %s, GOMAXPROCS %d, %d CPUs\n",
		nDocs, batchSize, rounds, runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Printf("# command: go run ./bench/convergebench -docs %d -batch %d -rounds %d -targets %s\n\n", nDocs, batchSize, rounds, strings.Join(targets, ","))

	store, err := embedmongo.Start(ctx, embedmongo.Options{})
	if err != nil {
		return err
	}
	defer store.Stop()
	client, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	if err != nil {
		return err
	}
	defer client.Disconnect(ctx)
	db := client.Database("bench")
	_ = db.Drop(ctx)
	cat, err := catalog.Open(ctx, client, catalog.WithDatabase("bench_meta"))
	if err != nil {
		return err
	}
	src := adapters.NewMongoStore(db.Collection("src"))
	var keys []adapters.Key
	var seed []any
	for i := 0; i < nDocs; i++ {
		k := fmt.Sprintf("user-%06d", i)
		keys = append(keys, k)
		d := bson.D{{Key: "_id", Value: k}, {Key: "name", Value: fmt.Sprintf("User %d", i)}, {Key: "email", Value: fmt.Sprintf("u%d@example.com", i)}, {Key: "age", Value: int32(20 + i%50)}}
		for f := 0; f < 16; f++ { // 20 fields in all
			d = append(d, bson.E{Key: fmt.Sprintf("f%02d", f), Value: fmt.Sprintf("value %d/%d", i, f)})
		}
		seed = append(seed, d)
	}
	for i := 0; i < len(seed); i += 1000 {
		if _, err := db.Collection("src").InsertMany(ctx, seed[i:min(i+1000, len(seed))]); err != nil {
			return fmt.Errorf("seeding: %w", err)
		}
	}
	batches := slices.Collect(slices.Chunk(keys, batchSize))
	readBatch := func(ctx context.Context, ks []adapters.Key) ([]bson.D, error) {
		m, err := src.BatchGet(ctx, ks)
		if err != nil {
			return nil, err
		}
		out := make([]bson.D, 0, len(m))
		for _, d := range m {
			out = append(out, d)
		}
		return out, nil
	}

	fmt.Println("| target | path | docs/s (median) | ms per batch | converge / raw bulk |")
	fmt.Println("|---|---|---:|---:|---:|")
	for _, target := range targets {
		var spec *transform.Spec
		var dst adapters.Store
		var paths []path
		var reset func(ctx context.Context) error
		switch target {
		case "mongodb":
			spec, err = transform.Parse("bench.yaml", []byte(fmt.Sprintf(specTemplate, `mongodb: {uri: "mongodb://unused/", database: bench, collection: dst}`, "source: _id")))
			if err != nil {
				return err
			}
			coll := db.Collection("dst")
			dst = adapters.NewMongoStore(coll)
			reset = func(ctx context.Context) error { _, err := coll.DeleteMany(ctx, bson.D{}); return err }
			paths = []path{
				{"raw single (ReplaceOne upsert)", func(ctx context.Context) error {
					for _, b := range batches {
						docs, err := readBatch(ctx, b)
						if err != nil {
							return err
						}
						for _, d := range docs {
							out, err := spec.Forward(d)
							if err != nil {
								return err
							}
							if _, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: out[0].Value}}, out, options.Replace().SetUpsert(true)); err != nil {
								return err
							}
						}
					}
					return nil
				}},
				{"raw bulk (BulkWrite of upserts)", func(ctx context.Context) error {
					for _, b := range batches {
						docs, err := readBatch(ctx, b)
						if err != nil {
							return err
						}
						models := make([]mongo.WriteModel, 0, len(docs))
						for _, d := range docs {
							out, err := spec.Forward(d)
							if err != nil {
								return err
							}
							models = append(models, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: out[0].Value}}).SetReplacement(out).SetUpsert(true))
						}
						// 25 writes per command, as MongoStore sends to FerretDB, whose update of
						// about 100 existing documents in one command deadlocks.
						for chunk := range slices.Chunk(models, 25) {
							if _, err := coll.BulkWrite(ctx, chunk, options.BulkWrite().SetOrdered(false)); err != nil {
								return err
							}
						}
					}
					return nil
				}},
			}
		case "dynamodb":
			moto, err := testenv.StartMoto(ctx)
			if err != nil {
				return fmt.Errorf("moto (run make clients): %w", err)
			}
			defer moto.Stop()
			table := testenv.UniqueName("bench")
			ddb := moto.DynamoDB()
			if err := testenv.CreateTable(ctx, ddb, testenv.Table{Name: table, Key: "pk"}); err != nil {
				return err
			}
			spec, err = transform.Parse("bench.yaml", []byte(fmt.Sprintf(specTemplate, `dynamodb: {table: `+table+`, region: us-east-1}`, "partition: pk")))
			if err != nil {
				return err
			}
			dyn, err := adapters.NewDynamoStore(ctx, table, "pk", adapters.DynamoClient(ddb))
			if err != nil {
				return err
			}
			dst = dyn
			reset = func(ctx context.Context) error {
				var ops []adapters.WriteOp
				for _, k := range keys {
					ops = append(ops, adapters.WriteOp{Key: k})
				}
				return dyn.BulkWrite(ctx, ops)
			}
			paths = []path{
				{"raw single (PutItem)", func(ctx context.Context) error {
					for _, b := range batches {
						docs, err := readBatch(ctx, b)
						if err != nil {
							return err
						}
						for _, d := range docs {
							out, err := spec.Forward(d)
							if err != nil {
								return err
							}
							item, err := adapters.MarshalItem(out)
							if err != nil {
								return err
							}
							if _, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
								return err
							}
						}
					}
					return nil
				}},
				{"raw bulk (BatchWriteItem)", func(ctx context.Context) error {
					for _, b := range batches {
						docs, err := readBatch(ctx, b)
						if err != nil {
							return err
						}
						var reqs []types.WriteRequest
						for _, d := range docs {
							out, err := spec.Forward(d)
							if err != nil {
								return err
							}
							item, err := adapters.MarshalItem(out)
							if err != nil {
								return err
							}
							reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
						}
						for _, chunk := range slices.Collect(slices.Chunk(reqs, 25)) {
							for len(chunk) > 0 {
								res, err := ddb.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: chunk}})
								if err != nil {
									return err
								}
								chunk = res.UnprocessedItems[table]
							}
						}
					}
					return nil
				}},
			}
		default:
			return fmt.Errorf("unknown target %q", target)
		}
		engine, err := shadow.NewEngine(shadow.Config{
			Migration: "bench-" + target, SpecVersion: spec.Version, Old: src, New: dst,
			Forward: spec.Forward, DeadLetters: cat, Log: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			return err
		}
		convergeAll := func(ctx context.Context) error {
			for _, b := range batches {
				if _, err := engine.ConvergeBatch(ctx, b, shadow.Forward); err != nil {
					return err
				}
			}
			return nil
		}
		paths = append(paths,
			path{"converge (empty target)", convergeAll},
			path{"converge (already converged)", convergeAll},
		)

		times := make([][]time.Duration, len(paths))
		for r := 0; r < rounds; r++ {
			for i, p := range paths {
				if p.name != "converge (already converged)" {
					if err := reset(ctx); err != nil {
						return fmt.Errorf("emptying %s: %w", target, err)
					}
				}
				start := time.Now()
				if err := p.run(ctx); err != nil {
					return fmt.Errorf("%s %s: %w", target, p.name, err)
				}
				times[i] = append(times[i], time.Since(start))
			}
		}
		medians := make([]time.Duration, len(paths))
		for i := range paths {
			slices.Sort(times[i])
			medians[i] = times[i][len(times[i])/2]
		}
		bulk := medians[1]
		for i, p := range paths {
			ratio := ""
			if strings.HasPrefix(p.name, "converge") {
				ratio = fmt.Sprintf("%.2f", bulk.Seconds()/medians[i].Seconds())
			}
			fmt.Printf("| %s | %s | %.0f | %.1f | %s |\n", target, p.name,
				float64(nDocs)/medians[i].Seconds(), float64(medians[i].Milliseconds())/float64(len(batches)), ratio)
		}
	}
	fmt.Println("\nconverge / raw bulk is throughput(converge) ÷ throughput(raw bulk): ≥ 0.9 meets the target.")
	return nil
}
