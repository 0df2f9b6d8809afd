package main

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

// runThrottle runs, per rate, a backfill with Config.Rate of a source of rate × -throttle-secs
// documents, after Prepare (so the plan and the target's creation are not timed), and reports
// the documents/s of Run against the rate.
func (b *bench) runThrottle(ctx context.Context, rates []int) error {
	fmt.Printf("## Throttle accuracy (%s target)\n\n", *flagThrTarget)
	type result struct {
		rate, n     int
		prep, secs  float64
		copiedCheck int64
	}
	var results []result
	for _, rate := range rates {
		n := int(float64(rate) * *flagThrSecs)
		name, seedTime, err := b.source(ctx, n)
		if err != nil {
			return err
		}
		fmt.Printf("Seeded %d source documents in %s.\n", n, seedTime.Round(time.Millisecond))
		var dst adapters.Store
		var spec *transform.Spec
		var cleanup func()
		switch *flagThrTarget {
		case "dynamodb":
			moto, err := b.startMoto(ctx)
			if err != nil {
				return err
			}
			table := testenv.UniqueName("thr")
			ddb := moto.DynamoDB()
			if spec, err = dynamoSpec(table); err != nil {
				return err
			}
			if dst, err = adapters.NewDynamoStore(ctx, table, "pk", adapters.DynamoClient(ddb)); err != nil {
				return err
			}
			cleanup = func() {
				_, _ = ddb.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
			}
		default:
			coll := b.client.Database(dstDB).Collection(fmt.Sprintf("thr_%d", rate))
			if spec, err = mongoSpec(); err != nil {
				return err
			}
			dst = adapters.NewMongoStore(coll)
			cleanup = func() { _ = coll.Drop(context.Background()) }
		}
		run, err := b.newBackfill(ctx, name, dst, spec, float64(rate))
		if err != nil {
			cleanup()
			return err
		}
		start := time.Now()
		_, err = backfill.Prepare(ctx, run.cfg)
		prep := time.Since(start).Seconds()
		var sum backfill.Summary
		if err == nil {
			start = time.Now()
			sum, err = backfill.Run(ctx, run.cfg)
		}
		secs := time.Since(start).Seconds()
		run.drop()
		cleanup()
		if err != nil {
			return fmt.Errorf("rate %d: %w", rate, err)
		}
		fmt.Printf("  rate %d: %d documents in %.2f s (Prepare %.2f s before)\n", rate, sum.Copied, secs, prep)
		results = append(results, result{rate, n, prep, secs, sum.Copied})
	}
	fmt.Println()
	fmt.Println("| Config.Rate, docs/s | docs | Prepare s (not timed) | Run s | achieved docs/s | achieved ÷ rate |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		got := float64(r.copiedCheck) / r.secs
		fmt.Printf("| %d | %d | %.2f | %.2f | %.1f | %.3f |\n", r.rate, r.n, r.prep, r.secs, got, got/float64(r.rate))
	}
	fmt.Println()
	return nil
}
