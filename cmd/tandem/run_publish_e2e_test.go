package main

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/testenv"
)

// journalMembers returns how many members of the journal's consumer group have partitions of
// topic assigned, once the group is stable (0 before).
func journalMembers(ctx context.Context, adm *kadm.Client, topic string) int {
	groups, err := adm.DescribeGroups(ctx, cdc.DefaultJournalGroup)
	if err != nil {
		return 0
	}
	g, ok := groups[cdc.DefaultJournalGroup]
	if !ok || g.Err != nil || g.State != "Stable" {
		return 0
	}
	n := 0
	for _, m := range g.Members {
		c, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, tp := range c.Topics {
			if tp.Topic == topic && len(tp.Partitions) > 0 {
				n++
				break
			}
		}
	}
	return n
}

// TestRunPublishesToTheJournal runs two `tandem run --cdc-apply journal` processes of one
// migration on a real Apache Kafka broker, with mongo-java-server (change streams) for the
// stores and the catalog, and no write through the proxy. One process is the forward tailer
// (elected); it publishes the changed keys to the journal and converges nothing itself, and the
// journal workers of both processes converge them: writes straight into old reach new through
// tailer → Kafka → worker. With the broker stopped (SIGSTOP) a change the tailer has received
// neither reaches new nor moves the checkpoint; once the broker answers again, it does both.
func TestRunPublishesToTheJournal(t *testing.T) {
	mj := testenv.StartMongoJavaT(t, testenv.MongoJavaOptions{})
	kafka := testenv.StartKafkaT(t)
	ctx := context.Background()
	direct, err := mongo.Connect(options.Client().ApplyURI(mj.URI()))
	require.NoError(t, err)
	defer direct.Disconnect(ctx)
	old := direct.Database("runpub").Collection("users")
	newColl := direct.Database("runpub").Collection("users_v2")
	const history = 10 // documents before tandem starts, which the backfill copies
	for i := range history {
		_, err := old.InsertOne(ctx, e2eUser(fmt.Sprintf("h%04d", i), i))
		require.NoError(t, err)
	}
	specPath := e2eSpec(t, mj.URI(), mj.URI(), "runpub")
	const topic = "tandem.journal.runpub"
	run := func(name string) (adminURL string, logs *syncBuffer, stop func() error) {
		logs = &syncBuffer{}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("tandem run %s's logs:\n%s", name, logs.String())
			}
		})
		_, adminURL, _, stop = runCommandLogs(t, logs, "run", "--upstream", mj.URI(), "--spec", specPath, "--cdc", "on",
			"--cdc-apply", "journal", "--kafka-brokers", kafka.Brokers()[0], "--journal-topic", topic, "--journal-partitions", "6",
			"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token-file", tokenFile(t), "--flags-poll", "50ms")
		return adminURL, logs, stop
	}
	adminA, _, stopA := run("A")
	adminB, _, stopB := run("B")
	admins := []string{adminA, adminB}
	sum := func(name string, labels map[string]string) float64 {
		var s float64
		for _, a := range admins {
			s += scrape(t, a, name, labels)
		}
		return s
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka.Brokers()...))
	require.NoError(t, err)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	require.Eventually(t, func() bool { return journalMembers(ctx, adm, topic) == 2 }, 2*time.Minute, 200*time.Millisecond,
		"both processes' journal workers hold partitions of the journal")

	api, err := admin.NewClient(adminA, e2eToken, nil)
	require.NoError(t, err)
	cat, err := catalog.Open(ctx, direct)
	require.NoError(t, err)
	_, err = api.Advance(ctx, "users-v2", flags.PhaseShadow, "publish to the journal")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p, err := backfill.Status(ctx, cat, "users-v2")
		return err == nil && p.Partitions > 0 && p.PartitionsDone == p.Partitions
	}, 2*time.Minute, 200*time.Millisecond, "the backfill copies the history")

	// Straight into old: inserts, updates and deletes.
	const n = 40
	for i := range n {
		_, err := old.InsertOne(ctx, e2eUser(fmt.Sprintf("p%04d", i), i))
		require.NoError(t, err)
	}
	for i := 0; i < n; i += 4 {
		_, err := old.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("p%04d", i)}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: "Updated"}}}})
		require.NoError(t, err)
		_, err = old.DeleteOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("p%04d", i+1)}})
		require.NoError(t, err)
	}
	var vs catalog.VerifySummary
	require.Eventually(t, func() bool {
		vs, err = api.Verify(ctx, "users-v2", false)
		return err == nil && vs.Clean && vs.Keys == history+n-n/4
	}, 2*time.Minute, 500*time.Millisecond, "the direct writes reach new: %+v %v", vs, err)
	forward := map[string]string{"migration": "users-v2", "direction": "forward"}
	assert.GreaterOrEqual(t, sum("tandem_cdc_converged_total", map[string]string{"direction": "forward", "result": cdc.ResultPublished}), float64(n+n/2),
		"the tailer published every change's key")
	for _, result := range []string{"upserted", "deleted", "unchanged", "echo"} {
		assert.Zero(t, sum("tandem_cdc_converged_total", map[string]string{"direction": "forward", "result": result}),
			"the tailer converged nothing itself (%s)", result)
	}
	for i, a := range admins {
		assert.Positive(t, scrape(t, a, "tandem_journal_worker_keys_total", map[string]string{"migration": "users-v2", "result": "upserted"}),
			"the journal worker of process %d converged keys", i)
	}

	// The broker stopped: the tailer receives a change but cannot have it acknowledged.
	before, err := cat.CDCStream(ctx, "users-v2", cdc.PathForward)
	require.NoError(t, err)
	received := sum("tandem_cdc_changes_total", forward)
	require.NoError(t, syscall.Kill(kafka.PID(), syscall.SIGSTOP))
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			require.NoError(t, syscall.Kill(kafka.PID(), syscall.SIGCONT))
		}
	}
	t.Cleanup(resume) // before the broker's Stop, which runs earlier-registered
	_, err = old.InsertOne(ctx, e2eUser("late", 99))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sum("tandem_cdc_changes_total", forward) > received }, time.Minute, 50*time.Millisecond,
		"the tailer receives the change")
	during, err := cat.CDCStream(ctx, "users-v2", cdc.PathForward)
	require.NoError(t, err)
	assert.Equal(t, before.Applied, during.Applied, "the checkpoint moved before the publish was acknowledged")
	assert.Equal(t, before.Position, during.Position)
	assert.ErrorIs(t, newColl.FindOne(ctx, bson.D{{Key: "_id", Value: "late"}}).Err(), mongo.ErrNoDocuments)

	resume()
	require.Eventually(t, func() bool {
		return newColl.FindOne(ctx, bson.D{{Key: "_id", Value: "late"}}).Err() == nil
	}, 2*time.Minute, 100*time.Millisecond, "once acknowledged, the change reaches new")
	require.Eventually(t, func() bool {
		s, err := cat.CDCStream(ctx, "users-v2", cdc.PathForward)
		return err == nil && s.Applied > before.Applied
	}, time.Minute, 100*time.Millisecond, "and the checkpoint moves past it")
	require.NoError(t, stopB())
	require.NoError(t, stopA())
}
