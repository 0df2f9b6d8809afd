package scaleout_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/cdc/scaleout"
	"github.com/tandemdb/tandem/transform"
)

// workerBatch is the most journal entries a worker child converges in one batch: small, so
// that a partition's entries take several batches and a kill lands between them.
const workerBatch = 8

// workerMain is a journal worker process of the group test; SIGTERM stops it.
func workerMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err := scaleout.RunWorker(ctx, scaleout.WorkerConfig{
		MongoURI: os.Getenv(envURI), DB: os.Getenv(envDB), Brokers: strings.Split(os.Getenv(envBrokers), ","),
		Topic: os.Getenv(envTopic), Name: os.Getenv(envName), Record: true, MaxBatch: workerBatch, Logger: childLog(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker child:", err)
		return 1
	}
	return 0
}

// TestJournalGroupAcrossProcesses runs two journal worker processes in the consumer group
// tandem-converge on a real Apache Kafka broker, over a journal topic of six partitions and
// FerretDB stores. With both running, each is assigned partitions and converges keys, and every
// key converges. Then every document changes (every tenth is deleted) and the changed keys are
// journaled; once the first worker has converged a batch of them it is SIGKILLed, mid-stream.
// Its partitions move to the other worker, which converges the keys the dead one left: at the
// end a full comparison finds the new store equal to the transform of the old one.
func TestJournalGroupAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	ctx := context.Background()
	brokers := kafkaBroker(t).Brokers()
	db := fmt.Sprintf("scaleout_journal_%d", os.Getpid())
	topic := db
	t.Cleanup(func() { _ = client.Database(db).Drop(context.Background()) })
	journal, err := adapters.NewKafkaJournal(adapters.KafkaJournalConfig{Brokers: brokers, Topic: topic, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(journal.Close)
	require.NoError(t, journal.EnsureTopic(ctx, 6, 1))
	adm := admin(t, brokers)

	const n = 240
	users := client.Database(db).Collection("users")
	ids := make([]string, n)
	docs := make([]any, n)
	for i := range n {
		ids[i] = fmt.Sprintf("k%05d", i)
		docs[i] = scaleout.Doc(ids[i], int32(i))
	}
	for chunk := range slices.Chunk(docs, 25) { // FerretDB: small commands
		_, err := users.InsertMany(ctx, chunk)
		require.NoError(t, err)
	}
	env := []string{envDB + "=" + db, envBrokers + "=" + strings.Join(brokers, ","), envTopic + "=" + topic}
	w1 := startChild(t, "worker", "w1", env...)
	startChild(t, "worker", "w2", env...)
	eventually(t, "both workers assigned partitions", func() bool {
		a := assignment(ctx, adm, topic)
		return len(a) == 2 && len(a["w1"]) > 0 && len(a["w2"]) > 0
	})
	t.Logf("assignment with two workers: %v", assignment(ctx, adm, topic))

	// Wave 1: every key, converged by both workers together.
	appendKeys(t, journal, ids)
	eventually(t, "every key of wave 1 handled", func() bool { return handledKeys(t, db, time.Time{}) >= n })
	eventually(t, "every key of wave 1 converged", func() bool { return differences(t, db) == 0 })
	before := handled(t, db, time.Time{})
	require.NotEmpty(t, before["w1"].keys, "w1 converged keys")
	require.NotEmpty(t, before["w2"].keys, "w2 converged keys")

	// Wave 2: change every document, journal every key, kill w1 once it is converging them.
	var models []mongo.WriteModel
	for i, id := range ids {
		if i%10 == 0 {
			models = append(models, mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}))
		} else {
			models = append(models, mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).
				SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "age", Value: int32(1000 + i)}}}}))
		}
	}
	for chunk := range slices.Chunk(models, 25) {
		_, err := users.BulkWrite(ctx, chunk)
		require.NoError(t, err)
	}
	mark := time.Now().UTC()
	appendKeys(t, journal, ids)
	eventually(t, "w1 converging wave 2", func() bool { return len(handled(t, db, mark)["w1"].keys) > 0 })
	w1.kill()
	killedAt := time.Now().UTC()
	left := differences(t, db)
	t.Logf("w1 killed with %d keys not converged yet", left)
	require.Positive(t, left, "the kill came before every key of wave 2 converged")
	w1Parts := handled(t, db, time.Time{})["w1"].partitions

	eventually(t, "w1's partitions moved to w2", func() bool {
		a := assignment(ctx, adm, topic)
		return len(a) == 1 && len(a["w2"]) == 6
	})
	eventually(t, "every key of wave 2 handled", func() bool { return handledKeys(t, db, mark) >= n })
	eventually(t, "every key of wave 2 converged", func() bool { return differences(t, db) == 0 })
	compareStores(t, db, n)

	after := handled(t, db, killedAt)
	assert.Empty(t, after["w1"].keys, "nothing handled by the dead worker")
	for _, p := range w1Parts {
		assert.Contains(t, after["w2"].partitions, p, "w2 converged keys of partition %d, which w1 had", p)
	}
	lag, err := journal.Lag(ctx, cdc.DefaultJournalGroup)
	require.NoError(t, err)
	assert.Zero(t, lag, "the group committed every record")
}

// admin returns an admin client of the broker.
func admin(t *testing.T, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// assignment returns the partitions of topic assigned to each member of the group
// tandem-converge, by client id, when the group is stable; nil otherwise.
func assignment(ctx context.Context, adm *kadm.Client, topic string) map[string][]int32 {
	groups, err := adm.DescribeGroups(ctx, cdc.DefaultJournalGroup)
	if err != nil {
		return nil
	}
	g, ok := groups[cdc.DefaultJournalGroup]
	if !ok || g.Err != nil || g.State != "Stable" {
		return nil
	}
	out := map[string][]int32{}
	for _, m := range g.Members {
		c, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, tp := range c.Topics {
			if tp.Topic == topic {
				out[m.ClientID] = append(out[m.ClientID], tp.Partitions...)
			}
		}
	}
	return out
}

// appendKeys journals ids, 100 to a call.
func appendKeys(t *testing.T, j *adapters.KafkaJournal, ids []string) {
	t.Helper()
	for chunk := range slices.Chunk(ids, 100) {
		entries := make([]adapters.JournalEntry, len(chunk))
		for i, id := range chunk {
			entries[i] = scaleout.Entry(id)
		}
		require.NoError(t, j.Append(context.Background(), entries...))
	}
}

// handledKeys counts the keys of the batches converged since since, by any worker: once it
// reaches the number journaled, every key has been converged at least once.
func handledKeys(t *testing.T, db string, since time.Time) int {
	t.Helper()
	k := 0
	for _, w := range handled(t, db, since) {
		k += len(w.keys)
	}
	if testing.Verbose() {
		t.Logf("%d keys converged since %s", k, since.Format(time.TimeOnly))
	}
	time.Sleep(time.Second) // spare the store: each call reads the whole record
	return k
}

// worked is what one worker recorded having converged.
type worked struct {
	keys       []string
	partitions []int32
}

// handled returns, by worker, the keys and partitions of the batches converged since since.
func handled(t *testing.T, db string, since time.Time) map[string]worked {
	t.Helper()
	cur, err := client.Database(db).Collection(scaleout.HandledCollection).Find(context.Background(),
		bson.D{{Key: "at", Value: bson.D{{Key: "$gte", Value: since}}}})
	require.NoError(t, err)
	var all []scaleout.Handled
	require.NoError(t, cur.All(context.Background(), &all))
	out := map[string]worked{}
	for _, h := range all {
		w := out[h.Worker]
		w.keys = append(w.keys, h.Keys...)
		for _, p := range h.Partitions {
			if !slices.Contains(w.partitions, p) {
				w.partitions = append(w.partitions, p)
			}
		}
		out[h.Worker] = w
	}
	return out
}

// expected returns the transform of every old document, normalized as the new store holds it,
// and the new store's documents, both by key.
func expected(t *testing.T, db string) (want, got map[string]bson.D) {
	t.Helper()
	ctx := context.Background()
	old, new := scaleout.Stores(client, db)
	spec, err := scaleout.Spec(db)
	require.NoError(t, err)
	want, got = map[string]bson.D{}, map[string]bson.D{}
	require.NoError(t, old.Scan(ctx, adapters.Partition{}, adapters.ScanOptions{}, func(docs []bson.D) error {
		for _, d := range docs {
			k, err := old.KeyOf(d)
			require.NoError(t, err)
			out, err := spec.Forward(d)
			require.NoError(t, err)
			norm, err := new.Normalize(out)
			require.NoError(t, err)
			want[adapters.KeyString(k)] = norm
		}
		return nil
	}))
	require.NoError(t, new.Scan(ctx, adapters.Partition{}, adapters.ScanOptions{}, func(docs []bson.D) error {
		for _, d := range docs {
			k, err := new.KeyOf(d)
			require.NoError(t, err)
			got[adapters.KeyString(k)] = d
		}
		return nil
	}))
	return want, got
}

// diff lists the keys missing from the new store, only in it, and differing.
func diff(want, got map[string]bson.D) (missing, extra, differ []string) {
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case !transform.Equal(w, g):
			differ = append(differ, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(differ)
	return missing, extra, differ
}

// differences counts the keys in which the stores differ.
func differences(t *testing.T, db string) int {
	t.Helper()
	missing, extra, differ := diff(expected(t, db))
	return len(missing) + len(extra) + len(differ)
}

// compareStores compares the stores fully: the new store holds exactly the transform of every
// old document.
func compareStores(t *testing.T, db string, n int) {
	t.Helper()
	want, got := expected(t, db)
	missing, extra, differ := diff(want, got)
	assert.Empty(t, missing, "missing from the new store")
	assert.Empty(t, extra, "only in the new store")
	assert.Empty(t, differ, "differing")
	assert.Len(t, got, len(want))
	assert.Len(t, want, n-n/10, "the old store holds the documents less every tenth, deleted")
}
