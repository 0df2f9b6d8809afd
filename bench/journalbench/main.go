//go:build linux

// Command journalbench measures converge throughput of the Kafka journal with 1 and with 2
// journal worker processes in one consumer group, on the same journal: a real Apache Kafka
// broker (testenv.StartKafka; `make kafka` installs it) and FerretDB embedded in this process as
// both stores.
//
// Each measurement makes a database and a journal topic of its own, seeds the old store with
// -keys documents, starts the worker processes (this program again, with
// JOURNALBENCH_WORKER set; each runs cdc.JournalWorker through scaleout.RunWorker), waits until
// the group is stable with every worker assigned partitions, then appends one entry per key and
// times until the group has committed every record (its lag is 0). The new store is then
// checked to hold every key. Rounds alternate the worker counts; the medians are printed with
// the ratio to one worker.
//
// Every process shares the machine's cores: the workers, this process and its FerretDB (which
// serves both stores and is where most of a converge's time goes), and the broker.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/bench/benchenv"
	"github.com/tandemdb/tandem/bench/cputime"
	"github.com/tandemdb/tandem/cdc/scaleout"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/testenv"
)

// The worker process's settings, in its environment.
const (
	envWorker  = "JOURNALBENCH_WORKER" // the worker's name
	envURI     = "JOURNALBENCH_URI"
	envDB      = "JOURNALBENCH_DB"
	envBrokers = "JOURNALBENCH_BROKERS"
	envTopic   = "JOURNALBENCH_TOPIC"
	envGroup   = "JOURNALBENCH_GROUP"
	envBatch   = "JOURNALBENCH_BATCH"
)

func main() {
	if name := os.Getenv(envWorker); name != "" {
		os.Exit(workerMain(name))
	}
	keys := flag.Int("keys", 600, "keys journaled per measurement")
	partitions := flag.Int("partitions", 6, "partitions of the journal topic")
	batch := flag.Int("batch", 50, "most journal entries per converge batch")
	workers := flag.String("workers", "1,2", "worker process counts to measure")
	rounds := flag.Int("rounds", 3, "rounds (medians are reported)")
	flag.Parse()
	var counts []int
	for _, s := range benchenv.SplitList(*workers) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "journalbench: -workers: %q is not a positive number\n", s)
			os.Exit(2)
		}
		counts = append(counts, n)
	}
	if *keys < 1 || *partitions < 1 || *batch < 1 || *rounds < 1 {
		fmt.Fprintln(os.Stderr, "journalbench: -keys, -partitions, -batch and -rounds must be positive")
		os.Exit(2)
	}
	if err := run(*keys, int32(*partitions), *batch, *rounds, counts); err != nil {
		fmt.Fprintln(os.Stderr, "journalbench:", err)
		os.Exit(1)
	}
}

func workerMain(name string) int {
	ctx, stop := signalContext()
	defer stop()
	batch, _ := strconv.Atoi(os.Getenv(envBatch))
	err := scaleout.RunWorker(ctx, scaleout.WorkerConfig{
		MongoURI: os.Getenv(envURI), DB: os.Getenv(envDB), Brokers: strings.Split(os.Getenv(envBrokers), ","),
		Topic: os.Getenv(envTopic), Group: os.Getenv(envGroup), Name: name, MaxBatch: batch,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "journalbench worker %s: %v\n", name, err)
		return 1
	}
	return 0
}

// signalContext ends when the parent stops the worker (SIGTERM) or on Ctrl-C.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
}

func run(keys int, partitions int32, batch, rounds int, counts []int) error {
	ctx := context.Background()
	fmt.Printf("# journalbench: %d keys, %d partitions, batches of %d, %d rounds; %s, GOMAXPROCS %d, %d CPUs (%s), commit %s\n",
		keys, partitions, batch, rounds, runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), benchenv.CPUModel(), benchenv.GitCommit())
	fmt.Printf("# command: %s\n", benchenv.CommandLine("./bench/journalbench"))
	fmt.Printf("# load average at the start: %s\n", benchenv.LoadAvg())

	store, err := embedmongo.Start(ctx, embedmongo.Options{})
	if err != nil {
		return err
	}
	defer store.Stop()
	client, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	kctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	kafka, err := testenv.StartKafka(kctx)
	cancel()
	if err != nil {
		return fmt.Errorf("kafka (run make kafka): %w", err)
	}
	defer kafka.Stop()

	results := map[int][]result{}
	for r := range rounds {
		order := slices.Clone(counts)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, w := range order {
			m := measurement{round: r, workers: w, keys: keys, partitions: partitions, batch: batch, store: store.URI(), brokers: kafka.Brokers()}
			res, err := m.run(ctx, client)
			if err != nil {
				return fmt.Errorf("round %d, %d workers: %w", r+1, w, err)
			}
			fmt.Printf("# round %d, %d worker(s): %.1f keys/s, CPU per key: workers %s, this process %s\n",
				r+1, w, res.rate, benchenv.Dur(res.workerCPU), benchenv.Dur(res.selfCPU))
			results[w] = append(results[w], res)
		}
	}
	fmt.Printf("# load average at the end: %s\n\n", benchenv.LoadAvg())
	fmt.Println("| worker processes | keys/s (median) | rounds | ÷ 1 worker | CPU per key, all workers | CPU per key, this process (FerretDB) |")
	fmt.Println("|---:|---:|---|---:|---:|---:|")
	base := median(results[counts[0]], func(r result) float64 { return r.rate })
	for _, w := range counts {
		rs := results[w]
		med := median(rs, func(r result) float64 { return r.rate })
		all := make([]string, len(rs))
		for i, r := range rs {
			all[i] = benchenv.Ops(r.rate)
		}
		wcpu := median(rs, func(r result) float64 { return float64(r.workerCPU) })
		scpu := median(rs, func(r result) float64 { return float64(r.selfCPU) })
		fmt.Printf("| %d | %s | %s | %.2f | %s | %s |\n", w, benchenv.Ops(med), strings.Join(all, ", "), med/base,
			benchenv.Dur(time.Duration(wcpu)), benchenv.Dur(time.Duration(scpu)))
	}
	return nil
}

// measurement is one timed run of some workers over a journal of their own.
type measurement struct {
	round, workers, keys, batch int
	partitions                  int32
	store                       string
	brokers                     []string
}

func (m measurement) name() string { return fmt.Sprintf("journalbench_r%d_w%d", m.round+1, m.workers) }

// result is one measurement: keys/s, and the CPU time per key of the workers together and of
// this process (the stores' FerretDB, the producer) over the timed part.
type result struct {
	rate               float64
	workerCPU, selfCPU time.Duration
}

// run seeds, starts the workers, waits for the group, appends the keys and measures.
func (m measurement) run(ctx context.Context, client *mongo.Client) (result, error) {
	db := m.name()
	_ = client.Database(db).Drop(ctx)
	defer func() {
		_ = client.Database(db).Drop(context.Background())
		_ = client.Database(db + "_meta").Drop(context.Background())
	}()
	ids := make([]string, m.keys)
	docs := make([]any, m.keys)
	for i := range ids {
		ids[i] = fmt.Sprintf("k%06d", i)
		docs[i] = scaleout.Doc(ids[i], int32(i))
	}
	users := client.Database(db).Collection("users")
	for chunk := range slices.Chunk(docs, 1000) {
		if _, err := users.InsertMany(ctx, chunk); err != nil {
			return result{}, fmt.Errorf("seeding: %w", err)
		}
	}
	journal, err := adapters.NewKafkaJournal(adapters.KafkaJournalConfig{Brokers: m.brokers, Topic: db, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return result{}, err
	}
	defer journal.Close()
	if err := journal.EnsureTopic(ctx, m.partitions, 1); err != nil {
		return result{}, err
	}
	procs, err := m.startWorkers(db)
	defer stopWorkers(procs)
	if err != nil {
		return result{}, err
	}
	if err := m.waitStable(ctx, db); err != nil {
		return result{}, err
	}
	start := time.Now()
	self0, _ := cputime.Process()
	workers0 := workersCPU(procs)
	for chunk := range slices.Chunk(ids, 500) {
		entries := make([]adapters.JournalEntry, len(chunk))
		for i, id := range chunk {
			entries[i] = scaleout.Entry(id)
		}
		if err := journal.Append(ctx, entries...); err != nil {
			return result{}, err
		}
	}
	for deadline := start.Add(10 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		lag, err := journal.Lag(ctx, db)
		if err == nil && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("the group still lags after 10 minutes (lag %d, %v)", lag, err)
		}
		if err := exited(procs); err != nil {
			return result{}, err
		}
	}
	elapsed := time.Since(start)
	self1, _ := cputime.Process()
	workers1 := workersCPU(procs)
	n, err := client.Database(db).Collection("users_v2").CountDocuments(ctx, bson.D{})
	if err != nil {
		return result{}, err
	}
	if n != int64(m.keys) {
		return result{}, fmt.Errorf("the new store holds %d documents, not %d", n, m.keys)
	}
	perKey := func(d time.Duration) time.Duration { return d / time.Duration(m.keys) }
	return result{rate: float64(m.keys) / elapsed.Seconds(), workerCPU: perKey(workers1 - workers0), selfCPU: perKey(self1 - self0)}, nil
}

// worker is a worker process and its output.
type worker struct {
	cmd  *exec.Cmd
	out  *strings.Builder
	done chan struct{}
}

func (m measurement) startWorkers(db string) ([]*worker, error) {
	var procs []*worker
	for i := range m.workers {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), envWorker+"=w"+strconv.Itoa(i+1), envURI+"="+m.store, envDB+"="+db,
			envBrokers+"="+strings.Join(m.brokers, ","), envTopic+"="+db, envGroup+"="+db, envBatch+"="+strconv.Itoa(m.batch))
		w := &worker{cmd: cmd, out: &strings.Builder{}, done: make(chan struct{})}
		cmd.Stdout, cmd.Stderr = w.out, w.out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return procs, fmt.Errorf("starting a worker: %w", err)
		}
		go func() {
			_ = cmd.Wait()
			close(w.done)
		}()
		procs = append(procs, w)
	}
	return procs, nil
}

// exited returns an error if a worker has exited.
func exited(procs []*worker) error {
	for _, w := range procs {
		select {
		case <-w.done:
			return fmt.Errorf("a worker exited (%s): %s", w.cmd.ProcessState, w.out.String())
		default:
		}
	}
	return nil
}

// stopWorkers ends the workers with SIGTERM (they leave the group) and waits for them, by pid.
func stopWorkers(procs []*worker) {
	for _, w := range procs {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range procs {
		select {
		case <-w.done:
		case <-time.After(30 * time.Second):
			_ = w.cmd.Process.Kill()
			<-w.done
		}
	}
}

// waitStable waits until the group has every worker as a member with partitions assigned.
func (m measurement) waitStable(ctx context.Context, group string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(m.brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		groups, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			continue
		}
		g := groups[group]
		if g.Err != nil || g.State != "Stable" || len(g.Members) != m.workers {
			continue
		}
		assigned := 0
		for _, mem := range g.Members {
			if c, ok := mem.Assigned.AsConsumer(); ok && len(c.Topics) > 0 && len(c.Topics[0].Partitions) > 0 {
				assigned++
			}
		}
		if assigned == m.workers {
			return nil
		}
	}
	return fmt.Errorf("the group %s did not become stable with %d members", group, m.workers)
}

// median is the median of f over rs.
func median(rs []result, f func(result) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// workersCPU is the user plus system CPU time the workers have used so far, from
// /proc/PID/stat (in clock ticks of 10ms, USER_HZ on Linux).
func workersCPU(procs []*worker) time.Duration {
	var total time.Duration
	for _, w := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses and may hold spaces.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * 10 * time.Millisecond
	}
	return total
}
