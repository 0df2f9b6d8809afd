package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/bench/benchenv"
	"github.com/tandemdb/tandem/bench/cputime"
	"github.com/tandemdb/tandem/flags"
)

// A mode is one thing measured in each round: the proxy with the migration in a phase, or a
// reference operation straight to FerretDB.
type mode struct {
	name  string
	phase string // flags phase of a proxy mode; "" for a reference
	op    func(ctx context.Context, e *latencyEnv, g int, rng *rand.Rand) (opKind, error)
}

type opKind int

const (
	opFind opKind = iota
	opReplace
	opUpdate
	numOps
)

var opNames = [numOps]string{"find", "replace", "update"}

var modes = []mode{
	{name: "passthrough", phase: flags.PhaseOff, op: mixOp},
	{name: "shadow", phase: flags.PhaseShadow, op: mixOp},
	{name: "dual", phase: flags.PhaseDual, op: mixOp},
	{name: refFind, op: directFind},
	{name: refFindIn, op: directFindIn},
	{name: refUpsert, op: directUpsert},
}

// Names of the reference modes.
const (
	refFind   = "FerretDB FindOne (direct)"
	refFindIn = "FerretDB find $in (direct)"
	refUpsert = "FerretDB upsert (direct)"
)

// latencyEnv is one proxy with the migration, a driver client through it, and one straight
// to FerretDB.
type latencyEnv struct {
	s       *stack
	users   *mongo.Collection // through the proxy
	direct  *mongo.Collection // the old collection, straight to FerretDB
	ref     *mongo.Collection // users_v2-shaped copies for the upsert reference, straight to FerretDB
	keys    int
	created time.Time
}

func keyOf(g, k int) string { return fmt.Sprintf("user-%02d-%05d", g, k) }

// userDoc is a users-v2 source document: {_id, name, email, age (int32), created (date)}.
func (e *latencyEnv) userDoc(id string, n int) bson.D {
	return bson.D{
		{Key: "_id", Value: id}, {Key: "name", Value: fmt.Sprintf("User %s #%d", id, n)},
		{Key: "email", Value: id + "@example.com"}, {Key: "age", Value: int32(18 + n%60)},
		{Key: "created", Value: bson.NewDateTimeFromTime(e.created)},
	}
}

// mixOp is the application's request mix on the migrated collection, by _id: 40% ReplaceOne
// with upsert, 40% UpdateOne ($set of two fields), 20% FindOne.
func mixOp(ctx context.Context, e *latencyEnv, g int, rng *rand.Rand) (opKind, error) {
	id := keyOf(g, rng.IntN(e.keys))
	n := rng.IntN(1 << 20)
	switch r := rng.IntN(10); {
	case r < 4:
		_, err := e.users.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, e.userDoc(id, n), options.Replace().SetUpsert(true))
		return opReplace, err
	case r < 8:
		_, err := e.users.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{
			{Key: "name", Value: fmt.Sprintf("User %s #%d", id, n)}, {Key: "age", Value: int32(18 + n%60)},
		}}})
		return opUpdate, err
	default:
		return opFind, e.users.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Err()
	}
}

// directFind is a point read, FindOne by _id, straight to FerretDB.
func directFind(ctx context.Context, e *latencyEnv, g int, rng *rand.Rand) (opKind, error) {
	id := keyOf(g, rng.IntN(e.keys))
	return opFind, e.direct.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Err()
}

// directFindIn is a point read in the form of a converge's two reads (MongoStore.BatchGet):
// find {_id: {$in: [key]}}, straight to FerretDB. FerretDB 1.24 on SQLite answers it with a
// scan of the collection, where it looks an _id equality up directly.
func directFindIn(ctx context.Context, e *latencyEnv, g int, rng *rand.Rand) (opKind, error) {
	id := keyOf(g, rng.IntN(e.keys))
	cur, err := e.direct.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{id}}}}})
	if err != nil {
		return opFind, err
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
	}
	return opFind, cur.Err()
}

// directUpsert is a converge's write: ReplaceOne with upsert of a users_v2-shaped document
// over an existing one, straight to FerretDB (into a copy, so that the new collection is left
// to the proxy).
func directUpsert(ctx context.Context, e *latencyEnv, g int, rng *rand.Rand) (opKind, error) {
	id := keyOf(g, rng.IntN(e.keys))
	doc, err := e.s.spec.Forward(e.userDoc(id, rng.IntN(1<<20)))
	if err != nil {
		return opReplace, err
	}
	_, err = e.ref.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, doc, options.Replace().SetUpsert(true))
	return opReplace, err
}

// latResult is one measurement of one mode.
type latResult struct {
	p50, p99     time.Duration
	opP50        [numOps]time.Duration
	writeP50     time.Duration // replace and update together
	opsPerS      float64
	n, writes    int
	errs         int
	firstErr     error
	cpuPerOp     time.Duration // process CPU (user + system) per operation
	converges    float64       // forward converges finished during the window, any path
	convergeMean time.Duration // mean converge duration during the window
	pending      int64         // async converges not yet finished when the window closed
	journaled    float64       // keys journaled during the window (queue full, failed converge)
	syncFailed   float64       // dual: converges before the reply that failed
}

// measureLat runs m's operation from clients goroutines for d.
func measureLat(e *latencyEnv, m mode, clients int, d time.Duration, seed uint64) latResult {
	ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Minute)
	defer cancel()
	type sample struct {
		op  opKind
		lat time.Duration
	}
	samples := make([][]sample, clients)
	inWindow := make([]int, clients)
	errs := make([]int, clients)
	firstErrs := make([]error, clients)
	hs0, hc0 := e.s.metricSum("tandem_converge_duration_seconds", map[string]string{"direction": "forward"})
	convN0 := e.s.convergeTotal()
	jour0, _ := e.s.metricSum("tandem_shadow_journaled_total", nil)
	sf0, _ := e.s.metricSum("tandem_proxy_migration_requests_total", map[string]string{"action": "sync_failed"})
	done := make(chan struct{})
	cpu0, _ := cputime.Process()
	start := time.Now()
	deadline := start.Add(d)
	for g := range clients {
		go func() {
			defer func() { done <- struct{}{} }()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			s := make([]sample, 0, 1024)
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				op, err := m.op(ctx, e, g, rng)
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
				s = append(s, sample{op, t1.Sub(t0)})
				if t1.Before(deadline) {
					inWindow[g]++
				}
			}
			samples[g] = s
		}()
	}
	for range clients {
		<-done
	}
	cpu1, cpuOK := cputime.Process()
	res := latResult{pending: e.s.asyncPending()}
	hs1, hc1 := e.s.metricSum("tandem_converge_duration_seconds", map[string]string{"direction": "forward"})
	res.converges = e.s.convergeTotal() - convN0
	if hc1 > hc0 {
		res.convergeMean = time.Duration((hs1 - hs0) / (hc1 - hc0) * float64(time.Second))
	}
	jour1, _ := e.s.metricSum("tandem_shadow_journaled_total", nil)
	res.journaled = jour1 - jour0
	sf1, _ := e.s.metricSum("tandem_proxy_migration_requests_total", map[string]string{"action": "sync_failed"})
	res.syncFailed = sf1 - sf0

	var all, writes []time.Duration
	var byOp [numOps][]time.Duration
	for g := range clients {
		for _, s := range samples[g] {
			all = append(all, s.lat)
			byOp[s.op] = append(byOp[s.op], s.lat)
			if s.op != opFind {
				writes = append(writes, s.lat)
			}
		}
		res.opsPerS += float64(inWindow[g])
		res.errs += errs[g]
		if res.firstErr == nil {
			res.firstErr = firstErrs[g]
		}
	}
	res.opsPerS /= d.Seconds()
	res.n, res.writes = len(all), len(writes)
	if cpuOK && res.n > 0 {
		res.cpuPerOp = (cpu1 - cpu0) / time.Duration(res.n)
	}
	slices.Sort(all)
	slices.Sort(writes)
	res.p50, res.p99 = benchenv.Percentile(all, 0.50), benchenv.Percentile(all, 0.99)
	res.writeP50 = benchenv.Percentile(writes, 0.50)
	for o := range byOp {
		slices.Sort(byOp[o])
		res.opP50[o] = benchenv.Percentile(byOp[o], 0.50)
	}
	return res
}

// setPhase moves the migration to phase with the Manager (forward one step at a time with
// Advance, backward with Rollback) and waits until the proxy's evaluator gives the new phase.
func setPhase(ctx context.Context, s *stack, phase string) error {
	cur, err := s.manager.Get(ctx, migrationName)
	if err != nil {
		return err
	}
	const who, why = "phasebench", "phasebench: next round"
	switch {
	case cur.Phase == phase:
	case slices.Index(flags.Phases, phase) < slices.Index(flags.Phases, cur.Phase):
		if _, err := s.manager.Rollback(ctx, migrationName, phase, who, why); err != nil {
			return err
		}
	default:
		for cur.Phase != phase {
			if cur, err = s.manager.Advance(ctx, migrationName, "", who, why); err != nil {
				return err
			}
		}
	}
	limit := time.Now().Add(10 * time.Second)
	for s.flagsSeen(ctx).Phase != phase {
		if time.Now().After(limit) {
			return fmt.Errorf("the proxy's flags did not reach phase %s within 10s", phase)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// latRow is a mode's rounds at one client count.
type latRow struct {
	mode    mode
	clients int
	rounds  []latResult
}

func (r latRow) med(f func(latResult) float64) float64 {
	v := make([]float64, len(r.rounds))
	for i, x := range r.rounds {
		v[i] = f(x)
	}
	return median(v)
}

func (r latRow) medDur(f func(latResult) time.Duration) time.Duration {
	return time.Duration(r.med(func(x latResult) float64 { return float64(f(x)) }))
}

func runLatency(ferretURI string, clientCounts []int, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fmt.Println("## 1. Client-visible latency by phase")
	fmt.Println()
	fmt.Printf("Load average before: %s\n\n", benchenv.LoadAvg())
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, journalTopic))
	if err != nil {
		return err
	}
	defer cluster.Close()
	s, err := startStack(ctx, stackConfig{
		ferretURI: ferretURI, database: "phasebench_latency", catalogDB: "phasebench_latency_meta",
		domain: "phasebench-latency", poll: flags.DefaultPollInterval, brokers: cluster.ListenAddrs(), log: log,
	})
	if err != nil {
		return err
	}
	defer s.close(context.Background())
	maxClients := slices.Max(clientCounts)
	e := &latencyEnv{s: s, keys: *flagKeys, created: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}

	// retryWrites=false, as in proxybench: through tandem the driver sees a router and would
	// add a txnNumber to every write; one driver client, its pool as large as the most clients.
	pc, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + s.addr + "/").
		SetMaxPoolSize(uint64(maxClients)).SetRetryWrites(false))
	if err != nil {
		return err
	}
	defer pc.Disconnect(context.Background())
	dc, err := mongo.Connect(options.Client().ApplyURI(ferretURI).SetMaxPoolSize(uint64(maxClients)).SetRetryWrites(false))
	if err != nil {
		return err
	}
	defer dc.Disconnect(context.Background())
	e.users = pc.Database(s.spec.Source.Database).Collection(oldColl)
	e.direct = dc.Database(s.spec.Source.Database).Collection(oldColl)
	e.ref = dc.Database(s.spec.Source.Database).Collection("users_v2_reference")

	// Seed every key in old, and its transform in new and in the reference copy, so that
	// every write of every mode replaces an existing document.
	seedStart := time.Now()
	var olds, news []any
	for g := range maxClients {
		for k := range e.keys {
			d := e.userDoc(keyOf(g, k), k)
			nd, err := s.spec.Forward(d)
			if err != nil {
				return fmt.Errorf("transforming a seed document: %w", err)
			}
			olds, news = append(olds, d), append(news, nd)
		}
	}
	for _, c := range []*mongo.Collection{e.direct, s.new, e.ref} {
		docs := olds
		if c != e.direct {
			docs = news
		}
		for i := 0; i < len(docs); i += 100 {
			if _, err := c.InsertMany(ctx, docs[i:min(i+100, len(docs))]); err != nil {
				return fmt.Errorf("seeding %s: %w", c.Name(), err)
			}
		}
	}
	fmt.Printf("Seeded %d documents in users, users_v2 and users_v2_reference in %s.\n\n", len(olds), time.Since(seedStart).Round(time.Millisecond))

	var rows []latRow
	var seed uint64
	for _, c := range clientCounts {
		byMode := make([][]latResult, len(modes))
		// Open the pools and warm every mode up once.
		for _, m := range modes {
			if err := prepare(ctx, s, m); err != nil {
				return err
			}
			seed++
			measureLat(e, m, c, 2**flagWarmup, seed)
		}
		for r := range *flagRounds {
			for k := range modes {
				i := (r + k) % len(modes)
				m := modes[i]
				if err := prepare(ctx, s, m); err != nil {
					return err
				}
				seed++
				measureLat(e, m, c, *flagWarmup, seed)
				runtime.GC()
				seed++
				res := measureLat(e, m, c, *flagDuration, seed)
				if res.errs > 0 {
					fmt.Fprintf(os.Stderr, "  %s clients=%d: %d errors, first: %v\n", m.name, c, res.errs, res.firstErr)
				}
				byMode[i] = append(byMode[i], res)
			}
		}
		for i, m := range modes {
			rows = append(rows, latRow{mode: m, clients: c, rounds: byMode[i]})
		}
		fmt.Fprintf(os.Stderr, "clients=%d", c)
		for i, m := range modes {
			fmt.Fprintf(os.Stderr, "  %s p50=%s", m.name, benchenv.Dur(latRow{rounds: byMode[i]}.medDur(func(x latResult) time.Duration { return x.p50 })))
		}
		fmt.Fprintln(os.Stderr)
	}
	// Leave nothing running behind the next part.
	if _, err := s.drain(200*time.Millisecond, 2*time.Minute); err != nil {
		return err
	}
	fmt.Printf("Load average after: %s\n\n", benchenv.LoadAvg())
	printLatency(rows)
	return nil
}

// prepare puts the migration in the mode's phase (a reference leaves it as it is) and waits
// until the converges of earlier rounds have finished, so that none run during this one.
func prepare(ctx context.Context, s *stack, m mode) error {
	if m.phase != "" {
		if err := setPhase(ctx, s, m.phase); err != nil {
			return err
		}
	}
	_, err := s.drain(200*time.Millisecond, 2*time.Minute)
	return err
}

func printLatency(rows []latRow) {
	fmt.Println("Modes: passthrough = phase off (the proxy forwards the namespace untouched); shadow = each")
	fmt.Println("write's key converged to users_v2 after the reply by the Writer's 16 workers (Engine.Converge:")
	fmt.Println("FindOne old, FindOne new, upsert new); dual = each write's key converged before the reply")
	fmt.Println("(Writer.Sync → Engine.ConvergeBatch: find $in old, find $in new, bulk upsert new). Mix: 40%")
	fmt.Println("ReplaceOne upsert, 40% UpdateOne, 20% FindOne, all by _id over -keys documents per client")
	fmt.Println("(every client count works on a collection of -keys × the largest count). References, straight to")
	fmt.Println("FerretDB with the same clients: a FindOne by _id; a find {_id: {$in: [key]}}, the form of a")
	fmt.Println("converge's two reads (MongoStore.BatchGet); a ReplaceOne upsert of a users_v2-shaped document")
	fmt.Println("over an existing one, a converge's write. CPU/op: this process's CPU (client, proxy, FerretDB,")
	fmt.Println("converges) per client operation.")
	fmt.Println("Each cell: median over rounds. converges/write: forward converges finished in the window ÷")
	fmt.Println("writes; backlog: async converges still pending when the window closed (median).")
	fmt.Println()
	fmt.Println("| clients | mode | p50 | p99 | ops/s | CPU/op | find p50 | write p50 | mean converge | converges/write | backlog | p50 ÷ passthrough (rounds) | p99 ÷ passthrough (rounds) |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
	var pass latRow
	for _, r := range rows {
		if r.mode.name == "passthrough" {
			pass = r
		}
		p50 := r.medDur(func(x latResult) time.Duration { return x.p50 })
		p99 := r.medDur(func(x latResult) time.Duration { return x.p99 })
		var conv, perWrite, backlog, r50, r99 string
		if r.mode.phase != "" {
			conv = benchenv.Dur(r.medDur(func(x latResult) time.Duration { return x.convergeMean }))
			if r.mode.phase == flags.PhaseOff {
				conv = "—"
			}
			perWrite = fmt.Sprintf("%.2f", r.med(func(x latResult) float64 { return x.converges / max(float64(x.writes), 1) }))
			backlog = fmt.Sprintf("%.0f", r.med(func(x latResult) float64 { return float64(x.pending) }))
			if r.mode.phase != flags.PhaseOff && pass.clients == r.clients {
				r50 = ratioCell(pass, r, func(x latResult) time.Duration { return x.p50 })
				r99 = ratioCell(pass, r, func(x latResult) time.Duration { return x.p99 })
			}
		}
		errNote := ""
		if errs := sumErrs(r); errs > 0 {
			errNote = fmt.Sprintf(" (%d errors)", errs)
		}
		findP50, writeP50 := benchenv.Dur(r.medDur(func(x latResult) time.Duration { return x.opP50[opFind] })), ""
		if r.mode.phase != "" || r.mode.name == refUpsert {
			writeP50 = benchenv.Dur(r.medDur(func(x latResult) time.Duration { return x.writeP50 }))
		}
		if r.mode.name == refUpsert {
			findP50 = ""
		}
		fmt.Printf("| %d | %s | %s | %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.clients, r.mode.name,
			benchenv.Dur(p50), benchenv.Dur(p99), benchenv.Ops(r.med(func(x latResult) float64 { return x.opsPerS })), errNote,
			benchenv.Dur(r.medDur(func(x latResult) time.Duration { return x.cpuPerOp })),
			findP50, writeP50, conv, perWrite, backlog, r50, r99)
	}
	fmt.Println()

	fmt.Println("Targets (p50, same run): shadow ≤ 1.05× passthrough, dual ≤ 1.5× passthrough. Breakdown of")
	fmt.Println("dual: its write p50 minus passthrough's, against the mean converge measured inside the proxy")
	fmt.Println("and against 2 × direct find $in p50 + direct upsert p50 (the two reads and the write of a")
	fmt.Println("converge before the reply, Writer.Sync → Engine.ConvergeBatch). Breakdown of shadow: the CPU")
	fmt.Println("it adds per operation, against the CPU of an asynchronous converge (Engine.Converge: two")
	fmt.Println("FindOne by _id and one upsert) per write.")
	fmt.Println()
	fmt.Println("| clients | shadow ÷ passthrough p50 | ≤ 1.05? | dual ÷ passthrough p50 | ≤ 1.5? | dual write p50 − passthrough write p50 | mean converge in dual | 2 × find $in + upsert (direct) | shadow CPU/op − passthrough CPU/op | writes/op × (2 × FindOne + upsert) CPU (direct) |")
	fmt.Println("|---:|---:|---|---:|---|---:|---:|---:|---:|---:|")
	byKey := map[string]latRow{}
	var counts []int
	for _, r := range rows {
		byKey[fmt.Sprint(r.clients, r.mode.name)] = r
		if !slices.Contains(counts, r.clients) {
			counts = append(counts, r.clients)
		}
	}
	p50 := func(x latResult) time.Duration { return x.p50 }
	w50 := func(x latResult) time.Duration { return x.writeP50 }
	for _, c := range counts {
		pass, sh, du := byKey[fmt.Sprint(c, "passthrough")], byKey[fmt.Sprint(c, "shadow")], byKey[fmt.Sprint(c, "dual")]
		find, findIn, ups := byKey[fmt.Sprint(c, refFind)], byKey[fmt.Sprint(c, refFindIn)], byKey[fmt.Sprint(c, refUpsert)]
		cpu := func(x latResult) time.Duration { return x.cpuPerOp }
		writeShare := sh.med(func(x latResult) float64 { return float64(x.writes) / max(float64(x.n), 1) })
		asyncCPU := time.Duration(writeShare * float64(2*find.medDur(cpu)+ups.medDur(cpu)))
		rs := float64(sh.medDur(p50)) / float64(pass.medDur(p50))
		rd := float64(du.medDur(p50)) / float64(pass.medDur(p50))
		fmt.Printf("| %d | %.2f | %s | %.2f | %s | %s | %s | %s | %s | %s |\n", c, rs, yesNo(rs <= 1.05), rd, yesNo(rd <= 1.5),
			benchenv.Dur(du.medDur(w50)-pass.medDur(w50)), benchenv.Dur(du.medDur(func(x latResult) time.Duration { return x.convergeMean })),
			benchenv.Dur(2*findIn.medDur(p50)+ups.medDur(p50)), benchenv.Dur(sh.medDur(cpu)-pass.medDur(cpu)), benchenv.Dur(asyncCPU))
	}
	fmt.Println()
	if *flagVerbose {
		fmt.Println("Every round, in the order run (p50 / p99 / ops/s / CPU/op / converges per write / backlog):")
		fmt.Println()
		fmt.Println("| clients | mode | rounds |")
		fmt.Println("|---:|---|---|")
		for _, r := range rows {
			var parts []string
			for _, x := range r.rounds {
				parts = append(parts, fmt.Sprintf("%s / %s / %s / %s / %.2f / %d", benchenv.Dur(x.p50), benchenv.Dur(x.p99), benchenv.Ops(x.opsPerS), benchenv.Dur(x.cpuPerOp),
					x.converges/max(float64(x.writes), 1), x.pending))
			}
			fmt.Printf("| %d | %s | %s |\n", r.clients, r.mode.name, strings.Join(parts, "; "))
		}
		fmt.Println()
	}
}

// ratioCell is median(r) ÷ median(pass) with the range of the per-round ratios (round i of r
// against round i of pass, measured minutes apart at most).
func ratioCell(pass, r latRow, f func(latResult) time.Duration) string {
	var lo, hi float64
	for i := range min(len(pass.rounds), len(r.rounds)) {
		q := float64(f(r.rounds[i])) / float64(f(pass.rounds[i]))
		if i == 0 || q < lo {
			lo = q
		}
		if i == 0 || q > hi {
			hi = q
		}
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", float64(r.medDur(f))/float64(pass.medDur(f)), lo, hi)
}

func sumErrs(r latRow) int {
	n := 0
	for _, x := range r.rounds {
		n += x.errs
	}
	return n
}

func yesNo(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}
