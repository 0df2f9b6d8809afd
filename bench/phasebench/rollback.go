package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/bench/benchenv"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/shadow"
)

const (
	probeID   = "user-probe"
	oldName   = "Old Name" // the probe's name in users
	newName   = "New Name" // its profile.full_name in users_v2, planted after the verification
	flipWho   = "phasebench"
	flipLimit = 10 * time.Second // longest wait for a proxy to obey a flip
	reverify  = 10 * time.Minute // re-run the verification when the last is older (the gate allows 15m)
)

// flipEnv is two proxies, each with its own flag provider (its own OpenFeature domain),
// polling one catalog, and a driver client through each.
type flipEnv struct {
	poll       time.Duration
	a, b       *stack
	probes     [2]*mongo.Collection // users through proxy a and through proxy b
	verifiedAt time.Time
	log        *slog.Logger
}

// flip is one cutover → rollback.
type flip struct {
	cutoverCall  time.Duration    // Manager.Cutover's own time (gates and the catalog change)
	cutoverSeen  [2]time.Duration // from the Cutover call until each proxy served the probe from new
	rollbackCall time.Duration    // Manager.Rollback's own time
	rollbackSeen [2]time.Duration // from the Rollback call until each proxy served the probe from old
	rtt          time.Duration    // median point-read round trip while waiting for the rollback
}

func (f flip) every() time.Duration { return max(f.rollbackSeen[0], f.rollbackSeen[1]) }

func runRollback(ferretURI string, polls []time.Duration, log *slog.Logger) error {
	fmt.Println("## 2. Rollback propagation")
	fmt.Println()
	fmt.Printf("Load average before: %s\n\n", benchenv.LoadAvg())
	type result struct {
		poll  time.Duration
		flips []flip
	}
	var results []result
	for _, poll := range polls {
		flips, err := measureFlips(ferretURI, poll, log)
		if err != nil {
			return fmt.Errorf("-flags-poll %s: %w", poll, err)
		}
		results = append(results, result{poll, flips})
	}
	fmt.Printf("Load average after: %s\n\n", benchenv.LoadAvg())

	fmt.Println("Two proxies in this process, each with its own flags.Provider (own OpenFeature domain) polling")
	fmt.Println("the one catalog. The probe document differs between users (name \"Old Name\") and users_v2")
	fmt.Println("(\"New Name\"), so a FindOne by _id through a proxy shows which store it reads. Per flip:")
	fmt.Println("Manager.Cutover (all gates), wait until both proxies read new, sleep a random 0–poll interval,")
	fmt.Println("then t0, Manager.Rollback, and one tight FindOne loop per proxy until it returns \"Old Name\".")
	fmt.Println("A flip's time is the later proxy's (every proxy routes by the new value); a proxy's time")
	fmt.Println("includes the Rollback call and the FindOne that saw the change.")
	fmt.Println()
	fmt.Println("| flags poll | flips | Rollback call p50 / p99 | every proxy obeys: p50 | p99 | max | mean | first proxy p50 | FindOne while polling p50 | cutover call p50 | cutover seen by every proxy p50 / p99 |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		get := func(f func(flip) time.Duration) []time.Duration {
			v := make([]time.Duration, len(r.flips))
			for i, x := range r.flips {
				v[i] = f(x)
			}
			slices.Sort(v)
			return v
		}
		call := get(func(f flip) time.Duration { return f.rollbackCall })
		every := get(flip.every)
		first := get(func(f flip) time.Duration { return min(f.rollbackSeen[0], f.rollbackSeen[1]) })
		rtt := get(func(f flip) time.Duration { return f.rtt })
		ccall := get(func(f flip) time.Duration { return f.cutoverCall })
		cseen := get(func(f flip) time.Duration { return max(f.cutoverSeen[0], f.cutoverSeen[1]) })
		var sum time.Duration
		for _, d := range every {
			sum += d
		}
		fmt.Printf("| %s | %d | %s / %s | **%s** | **%s** | %s | %s | %s | %s | %s | %s / %s |\n", r.poll, len(r.flips),
			benchenv.Dur(benchenv.Percentile(call, 0.5)), benchenv.Dur(benchenv.Percentile(call, 0.99)),
			benchenv.Dur(benchenv.Percentile(every, 0.5)), benchenv.Dur(benchenv.Percentile(every, 0.99)), benchenv.Dur(every[len(every)-1]),
			benchenv.Dur(sum/time.Duration(len(every))), benchenv.Dur(benchenv.Percentile(first, 0.5)), benchenv.Dur(benchenv.Percentile(rtt, 0.5)),
			benchenv.Dur(benchenv.Percentile(ccall, 0.5)), benchenv.Dur(benchenv.Percentile(cseen, 0.5)), benchenv.Dur(benchenv.Percentile(cseen, 0.99)))
	}
	fmt.Println()
	fmt.Println("p99 of 50 flips is the nearest-rank 99th percentile: the largest flip.")
	fmt.Println()
	if *flagVerbose {
		fmt.Println("Every flip (rollback call / proxy a / proxy b), ms:")
		fmt.Println()
		for _, r := range results {
			var parts []string
			for _, f := range r.flips {
				parts = append(parts, fmt.Sprintf("%.0f/%.0f/%.0f", ms(f.rollbackCall), ms(f.rollbackSeen[0]), ms(f.rollbackSeen[1])))
			}
			fmt.Printf("- poll %s: %s\n", r.poll, strings.Join(parts, " "))
		}
		fmt.Println()
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// measureFlips sets up two proxies with the given poll interval on fresh databases and times
// -flips cutover → rollback flips.
func measureFlips(ferretURI string, poll time.Duration, log *slog.Logger) ([]flip, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, journalTopic))
	if err != nil {
		return nil, err
	}
	defer cluster.Close()
	name := fmt.Sprintf("phasebench_flip_%dms", poll.Milliseconds())
	e := &flipEnv{poll: poll, log: log}
	for i, st := range []**stack{&e.a, &e.b} {
		s, err := startStack(ctx, stackConfig{
			ferretURI: ferretURI, database: name, catalogDB: name + "_meta",
			domain: fmt.Sprintf("phasebench-flip-%s-%c", poll, 'a'+i), poll: poll, brokers: cluster.ListenAddrs(), log: log,
		})
		if err != nil {
			return nil, err
		}
		defer s.close(context.Background())
		*st = s
		c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + s.addr + "/").SetRetryWrites(false))
		if err != nil {
			return nil, err
		}
		defer c.Disconnect(context.Background())
		e.probes[i] = c.Database(name).Collection(oldColl)
	}
	if err := e.seed(ctx); err != nil {
		return nil, err
	}
	for _, p := range []string{flags.PhaseShadow, flags.PhaseDual} {
		if _, err := e.a.manager.Advance(ctx, migrationName, p, flipWho, "phasebench: to dual"); err != nil {
			return nil, err
		}
	}
	if err := e.waitGates(ctx); err != nil {
		return nil, err
	}
	for i := range e.probes {
		if _, err := e.waitName(ctx, i, oldName, time.Now()); err != nil {
			return nil, fmt.Errorf("before the first flip: %w", err)
		}
	}

	flips := make([]flip, 0, *flagFlips)
	for n := range *flagFlips {
		if time.Since(e.verifiedAt) > reverify {
			if err := e.verify(ctx); err != nil {
				return nil, err
			}
		}
		f, err := e.flip(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("flip %d: %w", n+1, err)
		}
		flips = append(flips, f)
	}
	fmt.Fprintf(os.Stderr, "flags-poll=%s  %d flips, every proxy obeys rollback p50=%s\n", poll, len(flips),
		benchenv.Dur(time.Duration(median(durs(flips, flip.every)))))
	return flips, nil
}

func durs(fs []flip, f func(flip) time.Duration) []float64 {
	v := make([]float64, len(fs))
	for i, x := range fs {
		v[i] = float64(f(x))
	}
	return v
}

// seed writes 100 users and the probe to users, their transforms to users_v2, verifies (the
// cutover gate wants a clean verification), then makes the probe differ.
func (e *flipEnv) seed(ctx context.Context) error {
	created := bson.NewDateTimeFromTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	var olds, news []any
	for k := range 101 {
		id, name := keyOf(0, k), fmt.Sprintf("User %d", k)
		if k == 100 {
			id, name = probeID, oldName
		}
		d := bson.D{{Key: "_id", Value: id}, {Key: "name", Value: name}, {Key: "email", Value: id + "@example.com"},
			{Key: "age", Value: int32(18 + k%60)}, {Key: "created", Value: created}}
		nd, err := e.a.spec.Forward(d)
		if err != nil {
			return err
		}
		olds, news = append(olds, d), append(news, nd)
	}
	if _, err := e.a.old.InsertMany(ctx, olds); err != nil {
		return fmt.Errorf("seeding users: %w", err)
	}
	if _, err := e.a.new.InsertMany(ctx, news); err != nil {
		return fmt.Errorf("seeding users_v2: %w", err)
	}
	return e.verify(ctx)
}

// verify runs a full verification with the probe converged (so it is clean), then plants the
// probe's difference again.
func (e *flipEnv) verify(ctx context.Context) error {
	if _, err := e.a.engine.Converge(ctx, probeID, shadow.Forward); err != nil {
		return fmt.Errorf("converging the probe: %w", err)
	}
	sum, err := e.a.runner.Verify(ctx, false)
	if err != nil {
		return fmt.Errorf("verification: %w", err)
	}
	if !sum.Clean {
		return fmt.Errorf("verification not clean: %d mismatches in %d keys", sum.Mismatches, sum.Keys)
	}
	e.verifiedAt = time.Now()
	_, err = e.a.new.UpdateOne(ctx, bson.D{{Key: "_id", Value: probeID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "profile.full_name", Value: newName}}}})
	return err
}

// waitGates waits until every cutover gate passes: the journal workers report lag every 5s.
func (e *flipEnv) waitGates(ctx context.Context) error {
	limit := time.Now().Add(time.Minute)
	for {
		res, err := e.a.manager.CheckGates(ctx, migrationName)
		if err != nil {
			return err
		}
		ok := true
		var failed []string
		for _, r := range res {
			if !r.OK {
				ok = false
				failed = append(failed, r.Gate+": "+r.Detail)
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(limit) {
			return fmt.Errorf("cutover gates still failing after 1m: %s", strings.Join(failed, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitName reads the probe through proxy i until its name is want, and returns the time from
// t0 until the reply that had it, and the median round trip of the reads.
func (e *flipEnv) waitName(ctx context.Context, i int, want string, t0 time.Time) (time.Duration, error) {
	d, _, err := e.waitNameRTT(ctx, i, want, t0)
	return d, err
}

func (e *flipEnv) waitNameRTT(ctx context.Context, i int, want string, t0 time.Time) (time.Duration, time.Duration, error) {
	var rtts []float64
	limit := t0.Add(flipLimit)
	for {
		var doc struct {
			Name string `bson:"name"`
		}
		s := time.Now()
		err := e.probes[i].FindOne(ctx, bson.D{{Key: "_id", Value: probeID}}).Decode(&doc)
		now := time.Now()
		rtts = append(rtts, float64(now.Sub(s)))
		if err != nil {
			return 0, 0, fmt.Errorf("proxy %c: reading the probe: %w", 'a'+i, err)
		}
		if doc.Name == want {
			return now.Sub(t0), time.Duration(median(rtts)), nil
		}
		if now.After(limit) {
			return 0, 0, fmt.Errorf("proxy %c still reads %q, not %q, %s after the flip", 'a'+i, doc.Name, want, flipLimit)
		}
	}
}

// flip runs one cutover → rollback and times both.
func (e *flipEnv) flip(ctx context.Context, n int) (flip, error) {
	var f flip
	c0 := time.Now()
	_, gates, err := e.a.manager.Cutover(ctx, migrationName, flipWho, fmt.Sprintf("phasebench flip %d", n+1))
	f.cutoverCall = time.Since(c0)
	if err != nil {
		if errors.Is(err, flags.ErrGateFailed) {
			return f, fmt.Errorf("cutover: %w (gates: %+v)", err, gates)
		}
		return f, fmt.Errorf("cutover: %w", err)
	}
	var errs [2]error
	both := func(want string, t0 time.Time, out *[2]time.Duration, rtt *time.Duration) error {
		done := make(chan struct{})
		go func() {
			defer close(done)
			out[1], _, errs[1] = e.waitNameRTT(ctx, 1, want, t0)
		}()
		var r time.Duration
		out[0], r, errs[0] = e.waitNameRTT(ctx, 0, want, t0)
		<-done
		if rtt != nil {
			*rtt = r
		}
		return errors.Join(errs[:]...)
	}
	if err := both(newName, c0, &f.cutoverSeen, nil); err != nil {
		return f, fmt.Errorf("after cutover: %w", err)
	}
	// Start the rollback at a random point of the providers' poll cycles.
	time.Sleep(time.Duration(rand.Int64N(int64(e.poll))))
	t0 := time.Now()
	if _, err := e.a.manager.Rollback(ctx, migrationName, "", flipWho, fmt.Sprintf("phasebench flip %d", n+1)); err != nil {
		return f, fmt.Errorf("rollback: %w", err)
	}
	f.rollbackCall = time.Since(t0)
	if err := both(oldName, t0, &f.rollbackSeen, &f.rtt); err != nil {
		return f, fmt.Errorf("after rollback: %w", err)
	}
	return f, nil
}
