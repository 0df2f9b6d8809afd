package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

// dynamoSpec writes a spec from sourceURI's database db (collection users) to the DynamoDB
// table on moto at endpoint, partition key pk, and returns its path. Its steps keep numbers as
// they are (a DynamoDB number comes back as the narrowest integer), so the reverse of an item
// is the old document exactly.
func dynamoSpec(t *testing.T, sourceURI, db, table, endpoint string) string {
	t.Helper()
	spec := fmt.Sprintf(`name: users-dyn
source:
  mongodb: {uri: %q, database: %s, collection: users}
target:
  dynamodb: {table: %s, region: %s, endpoint: %q}
key:
  partition: pk
forward:
  - rename: {from: name, to: profile.full_name}
  - move: {from: email, to: profile.email}
  - convert: {path: created, from: date, to: string}
  - set: {path: schema_version, value: "v2"}
`, sourceURI, db, table, testenv.MotoRegion, endpoint)
	path := filepath.Join(t.TempDir(), "users-dyn.yaml")
	require.NoError(t, os.WriteFile(path, []byte(spec), 0o600))
	return path
}

// motoCredentials gives tandem's AWS SDK moto's static credentials (the spec names no
// credentials: tandem uses the SDK's chain, here the environment).
func motoCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", testenv.MotoAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testenv.MotoSecretKey)
	t.Setenv("AWS_REGION", testenv.MotoRegion)
}

// scrape sums the samples of a metric family in tandem's /metrics whose labels include labels.
func scrape(t *testing.T, adminURL, name string, labels map[string]string) float64 {
	t.Helper()
	_, body := httpGet(t, adminURL+"/metrics")
	line := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `\{([^}]*)\} (\S+)$`)
	var sum float64
	for _, l := range strings.Split(body, "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		all := true
		for k, v := range labels {
			all = all && strings.Contains(","+m[1]+",", ","+k+`="`+v+`",`)
		}
		if !all {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		require.NoError(t, err, l)
		sum += v
	}
	return sum
}

// TestRunReverseFromDynamoDBStreams runs `tandem run --cdc on` from a MongoDB collection
// (mongo-java-server, for the forward change stream) to a DynamoDB table on moto, with no
// write through the proxy. The table does not exist at start-up: the backfill creates it with
// a stream, and the reverse path's start position is taken after that (by the reverse drain,
// which runs before cutover). In
// cutover, writes made straight into the table (a new item, a changed one, a delete) reach the
// old collection through the table's stream; each of them comes back on old's change stream
// and the forward path writes nothing for it (the echo guard), so the table's stream carries
// exactly the test's writes: no ping-pong. After a rollback the old store holds them, and a
// write made just before the rollback is drained into old.
func TestRunReverseFromDynamoDBStreams(t *testing.T) {
	mj := testenv.StartMongoJavaT(t, testenv.MongoJavaOptions{})
	moto := testenv.StartMotoT(t)
	motoCredentials(t)
	ctx := context.Background()
	direct, err := mongo.Connect(options.Client().ApplyURI(mj.URI()))
	require.NoError(t, err)
	defer direct.Disconnect(ctx)
	old := direct.Database("rundyn").Collection("users")
	const n = 20
	docs := make([]any, n)
	for i := range docs {
		docs[i] = e2eUser(fmt.Sprintf("h%04d", i), i)
	}
	_, err = old.InsertMany(ctx, docs)
	require.NoError(t, err)
	table := testenv.UniqueName("users_dyn")
	specPath := dynamoSpec(t, mj.URI(), "rundyn", table, moto.Endpoint())
	spec, err := loadSpecFile(specPath, storeOverrides{})
	require.NoError(t, err)
	// The test's own writes into the table, as a new-schema application makes them.
	newStore, err := adapters.NewDynamoStore(ctx, table, "pk", adapters.DynamoClient(moto.DynamoDB()))
	require.NoError(t, err)

	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tandem's logs:\n%s", logs.String())
		}
	})
	_, adminURL, _, stop := runCommandLogs(t, logs, "run", "--upstream", mj.URI(), "--spec", specPath, "--cdc", "on",
		"--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token-file", tokenFile(t),
		"--flags-poll", "50ms", "--batch", "10", "--workers", "2", "--partitions", "2")
	api, err := admin.NewClient(adminURL, e2eToken, nil)
	require.NoError(t, err)
	cat, err := catalog.Open(ctx, direct)
	require.NoError(t, err)
	streams, err := cat.CDCStreams(ctx, "users-dyn")
	require.NoError(t, err)
	require.Len(t, streams, 1, "only the forward start position: the table does not exist yet")

	_, err = api.Advance(ctx, "users-dyn", flags.PhaseShadow, "copy into DynamoDB")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p, err := backfill.Status(ctx, cat, "users-dyn")
		return err == nil && p.Partitions > 0 && p.PartitionsDone == p.Partitions
	}, 3*time.Minute, 200*time.Millisecond, "the backfill creates the table and copies")
	require.Eventually(t, func() bool {
		s, err := cat.CDCStream(ctx, "users-dyn", cdc.PathReverse)
		return err == nil && strings.HasPrefix(s.Source, "dynamodb stream "+table)
	}, 2*time.Minute, 200*time.Millisecond, "the reverse path takes its start position once the table exists")
	var sum catalog.VerifySummary
	require.Eventually(t, func() bool {
		sum, err = api.Verify(ctx, "users-dyn", false)
		return err == nil && sum.Clean
	}, time.Minute, 500*time.Millisecond, "verification is clean: %+v %v", sum, err)
	cutOver(t, ctx, api, "users-dyn", "reverse from DynamoDB Streams")

	// A first write into the table: once it is in old, the reverse path has read everything the
	// stream held before it (what tandem itself wrote into the table since the start position:
	// all of it in old already), and once the forward path has seen it come back, the counts
	// below stand still unless something writes.
	newDoc := func(id, name string, n int) bson.D {
		raw, err := bson.Marshal(e2eUser(id, n))
		require.NoError(t, err)
		var d bson.D
		require.NoError(t, bson.Unmarshal(raw, &d))
		d[1].Value = name
		doc, err := spec.Forward(d)
		require.NoError(t, err)
		return doc
	}
	nameOf := func(id string) (string, bool) {
		var d bson.M
		if err := old.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil {
			return "", false
		}
		s, _ := d["name"].(string)
		return s, true
	}
	reverse := map[string]string{"migration": "users-dyn", "direction": "reverse"}
	forward := map[string]string{"migration": "users-dyn", "direction": "forward"}
	fwdResults := func() float64 { return scrape(t, adminURL, "tandem_cdc_converged_total", forward) }
	before := fwdResults()
	require.NoError(t, newStore.Upsert(ctx, newDoc("m0000", "First", 3)))
	require.Eventually(t, func() bool {
		s, _ := nameOf("m0000")
		return s == "First" && fwdResults() >= before+1
	}, time.Minute, 100*time.Millisecond, "the first write reaches old and comes back on old's stream")
	assert.EqualValues(t, 1, scrape(t, adminURL, "tandem_cdc_converged_total", map[string]string{"direction": "reverse", "result": "upserted"}),
		"only the first write changed old: what tandem itself wrote into the table was in old already")
	changed0 := scrape(t, adminURL, "tandem_cdc_changes_total", reverse)
	fwdResults0 := fwdResults()
	fwdWrites := func() float64 {
		return scrape(t, adminURL, "tandem_cdc_converged_total", map[string]string{"direction": "forward", "result": "upserted"}) +
			scrape(t, adminURL, "tandem_cdc_converged_total", map[string]string{"direction": "forward", "result": "deleted"})
	}
	fwdWrites0 := fwdWrites()

	// Straight into the table: a new item, a changed one, a deleted one, then a sentinel.
	require.NoError(t, newStore.Upsert(ctx, newDoc("n0001", "Written to new", 7)))
	require.NoError(t, newStore.Upsert(ctx, newDoc("h0001", "Changed in new", 1)))
	_, err = moto.DynamoDB().DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(table),
		Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "h0002"}}})
	require.NoError(t, err)
	require.NoError(t, newStore.Upsert(ctx, newDoc("s0001", "Sentinel", 9)))
	want, err := spec.Reverse(newDoc("n0001", "Written to new", 7))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var got bson.D
		if err := old.FindOne(ctx, bson.D{{Key: "_id", Value: "n0001"}}).Decode(&got); err != nil || !transform.Equal(want, got) {
			return false
		}
		h1, _ := nameOf("h0001")
		_, h2 := nameOf("h0002")
		s, _ := nameOf("s0001")
		return h1 == "Changed in new" && !h2 && s == "Sentinel"
	}, time.Minute, 100*time.Millisecond, "the writes made straight into the table reach old")

	// No ping-pong: each of the four writes into old comes back on old's change stream, and the
	// forward path writes nothing for it; the table's stream carried the test's four writes only.
	require.Eventually(t, func() bool {
		return fwdResults() >= fwdResults0+4
	}, time.Minute, 100*time.Millisecond, "the forward path sees the reverse path's four writes into old")
	assert.Equal(t, fwdWrites0, fwdWrites(), "the forward path wrote a reverse converge back into the table")
	assert.Positive(t, scrape(t, adminURL, "tandem_cdc_converged_total", map[string]string{"direction": "forward", "result": "echo"}),
		"the echo guard recognised the reverse path's writes")
	assert.Equal(t, changed0+4, scrape(t, adminURL, "tandem_cdc_changes_total", reverse), "the table's stream carried more than the test's writes")
	rev, err := cat.CDCStream(ctx, "users-dyn", cdc.PathReverse)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, rev.Applied, int64(5), "the checkpoint counts every change applied")
	assert.False(t, rev.At.IsZero(), "the checkpoint holds the newest change's time")

	// A write into the table right before the rollback is drained into old after it.
	require.NoError(t, newStore.Upsert(ctx, newDoc("n0001", "Just before the rollback", 7)))
	_, err = api.Rollback(ctx, "users-dyn", "", "roll back after new-schema writes")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		s, _ := nameOf("n0001")
		return s == "Just before the rollback"
	}, time.Minute, 100*time.Millisecond, "the write made just before the rollback reaches old")
	h1, _ := nameOf("h0001")
	assert.Equal(t, "Changed in new", h1, "after the rollback old holds the writes made to new")
	_, h2 := nameOf("h0002")
	assert.False(t, h2, "and the delete")
	sum, err = api.Verify(ctx, "users-dyn", false)
	require.NoError(t, err)
	assert.True(t, sum.Clean, "after the rollback old and new agree: %+v", sum)
	require.NoError(t, stop())
}

// TestRunRefusesATableWithoutAStream: with --cdc on, a DynamoDB target table that exists
// without a stream stops tandem run at start-up with an error naming the table and the command
// that enables its stream; with --cdc auto it starts and says the same in a warning.
func TestRunRefusesATableWithoutAStream(t *testing.T) {
	mj := testenv.StartMongoJavaT(t, testenv.MongoJavaOptions{})
	moto := testenv.StartMotoT(t)
	motoCredentials(t)
	ctx := context.Background()
	table := testenv.UniqueName("nostream")
	require.NoError(t, testenv.CreateTable(ctx, moto.DynamoDB(), testenv.Table{Name: table, Key: "pk"}))
	specPath := dynamoSpec(t, mj.URI(), "nostream", table, moto.Endpoint())
	args := func(mode string) []string {
		return []string{"run", "--upstream", mj.URI(), "--spec", specPath, "--cdc", mode, "--journal-embedded",
			"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token-file", tokenFile(t)}
	}
	out := &syncBuffer{}
	cmd := newRootCmd(out, out)
	cmd.SetArgs(args(cdcOn))
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(runCtx)
	require.Error(t, err, "tandem run --cdc on started without the table's stream")
	require.NoError(t, runCtx.Err())
	assert.ErrorIs(t, err, cdc.ErrNoStream)
	assert.Contains(t, err.Error(), "table "+table+": the table has no stream enabled")
	assert.Contains(t, err.Error(), "aws dynamodb update-table --table-name "+table+" --stream-specification StreamEnabled=true")
	assert.Contains(t, err.Error(), "reverse-cdc")

	logs := &syncBuffer{}
	_, _, _, stop := runCommandLogs(t, logs, args(cdcAuto)...)
	require.NoError(t, stop())
	assert.Contains(t, logs.String(), "no change streams on this store")
	assert.Contains(t, logs.String(), "--table-name "+table)
}
