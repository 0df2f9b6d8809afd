package proxy_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/proxy/proxytest"
)

// sentCommands records the write commands a driver sends, as its command monitoring shows them.
type sentCommands struct {
	mu   sync.Mutex
	cmds []bson.Raw
}

func (s *sentCommands) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if isWriteCommand(e.CommandName) {
			s.mu.Lock()
			s.cmds = append(s.cmds, append(bson.Raw(nil), e.Command...))
			s.mu.Unlock()
		}
	}}
}

func (s *sentCommands) all() []bson.Raw {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bson.Raw(nil), s.cmds...)
}

func isWriteCommand(name string) bool {
	switch name {
	case "insert", "update", "delete", "findAndModify":
		return true
	}
	return false
}

// receivedWrites returns the write commands a recording fake received from index from on.
func receivedWrites(f *proxytest.FakeUpstream, from int) []bson.Raw {
	var out []bson.Raw
	for _, c := range f.Commands()[from:] {
		if isWriteCommand(c.Index(0).Key()) {
			out = append(out, c)
		}
	}
	return out
}

// retryableWrites runs the writes a driver makes retryable when it may.
func retryableWrites(t *testing.T, coll *mongo.Collection) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "k1"}, {Key: "x", Value: 1}})
	require.NoError(t, err, "InsertOne")
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "k1"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "x", Value: 1}}}})
	require.NoError(t, err, "UpdateOne")
	require.NoError(t, coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "k1"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "x", Value: 1}}}}).Err(), "FindOneAndUpdate")
}

// withoutField returns doc as bson.D without its top-level field key.
func withoutField(t *testing.T, doc bson.Raw, key string) bson.D {
	t.Helper()
	var d bson.D
	require.NoError(t, bson.Unmarshal(doc, &d))
	out := d[:0]
	for _, e := range d {
		if e.Key != key {
			out = append(out, e)
		}
	}
	return out
}

// TestRetryableWritesToAStandalone: a standalone mongod refuses txnNumber, which a driver sends
// through the proxy (a router to it) but never directly. Through the proxy the writes succeed
// and the standalone gets exactly what the driver sent but txnNumber, compressed or not.
func TestRetryableWritesToAStandalone(t *testing.T) {
	for _, comp := range []string{"none", "snappy", "zlib", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			fakeOpts := []proxytest.FakeOption{proxytest.AsStandalone(), proxytest.RecordingCommands()}
			copts := options.Client()
			if comp != "none" {
				fakeOpts = append(fakeOpts, proxytest.WithCompressors(comp))
				copts.SetCompressors([]string{comp})
			}
			fake, err := proxytest.StartFake(fakeOpts...)
			require.NoError(t, err)
			t.Cleanup(fake.Close)

			// Directly, the driver sees a standalone and sends no txnNumber.
			direct := connect(t, fake.URI(), copts)
			retryableWrites(t, direct.Database("app").Collection("users"))
			got := receivedWrites(fake, 0)
			require.Len(t, got, 3)
			for _, c := range got {
				_, err := c.LookupErr("txnNumber")
				assert.Error(t, err, "a driver sends no txnNumber to a standalone: %s", c)
			}

			p := serveProxy(t, fake.URI())
			var sent sentCommands
			client := connect(t, p.uri, options.Client().SetMonitor(sent.monitor()).SetCompressors(copts.Compressors))
			before, compressedBefore := len(fake.Commands()), fake.CompressedRequests()
			retryableWrites(t, client.Database("app").Collection("users"))

			sentWrites, got := sent.all(), receivedWrites(fake, before)
			require.Len(t, sentWrites, 3)
			require.Len(t, got, 3, "no write was retried")
			for i := range sentWrites {
				_, err := sentWrites[i].LookupErr("txnNumber")
				require.NoError(t, err, "the driver made the write retryable: %s", sentWrites[i])
				_, err = got[i].LookupErr("txnNumber")
				assert.Error(t, err, "the standalone got no txnNumber: %s", got[i])
				assert.Equal(t, withoutField(t, sentWrites[i], "txnNumber"), withoutField(t, got[i], "txnNumber"), "nothing else changed")
			}
			if comp != "none" {
				assert.GreaterOrEqual(t, fake.CompressedRequests()-compressedBefore, int64(3), "re-encoded writes are compressed again")
			}
		})
	}
}

// TestTxnNumberPassesThroughToReplicaSetsAndRouters: upstreams that accept retryable writes get
// txnNumber as the driver sent it.
func TestTxnNumberPassesThroughToReplicaSetsAndRouters(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  proxytest.FakeOption
	}{
		{"replica set primary", proxytest.AsReplicaSetPrimary("rs0")},
		{"mongos", proxytest.AsRouter()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, err := proxytest.StartFake(tc.opt, proxytest.RecordingCommands())
			require.NoError(t, err)
			t.Cleanup(fake.Close)
			p := serveProxy(t, fake.URI())
			var sent sentCommands
			client := connect(t, p.uri, options.Client().SetMonitor(sent.monitor()))
			retryableWrites(t, client.Database("app").Collection("users"))
			sentWrites, got := sent.all(), receivedWrites(fake, 0)
			require.Len(t, got, 3)
			for i := range sentWrites {
				assert.Equal(t, sentWrites[i].Lookup("txnNumber"), got[i].Lookup("txnNumber"))
				var want, have bson.D
				require.NoError(t, bson.Unmarshal(sentWrites[i], &want))
				require.NoError(t, bson.Unmarshal(got[i], &have))
				assert.Equal(t, want, have, "forwarded unchanged")
			}
		})
	}
}

// TestTransactionsOnAStandaloneFailAsDirectly: the proxy does not make a transaction to a
// standalone non-transactional; it fails as it does directly, with IllegalOperation.
func TestTransactionsOnAStandaloneFailAsDirectly(t *testing.T) {
	fake, err := proxytest.StartFake(proxytest.AsStandalone(), proxytest.RecordingCommands())
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	p := serveProxy(t, fake.URI())

	inTransaction := func(t *testing.T, uri string) error {
		client := connect(t, uri)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		sess, err := client.StartSession()
		require.NoError(t, err)
		defer sess.EndSession(ctx)
		require.NoError(t, sess.StartTransaction())
		_, err = client.Database("app").Collection("users").InsertOne(mongo.NewSessionContext(ctx, sess), bson.D{{Key: "_id", Value: "t1"}})
		_ = sess.AbortTransaction(ctx)
		return err
	}
	directErr := inTransaction(t, fake.URI())
	before := len(fake.Commands())
	proxyErr := inTransaction(t, p.uri)

	var direct, proxied mongo.ServerError
	require.ErrorAs(t, directErr, &direct)
	require.ErrorAs(t, proxyErr, &proxied)
	assert.True(t, direct.HasErrorCode(20), "IllegalOperation directly: %v", directErr)
	assert.True(t, proxied.HasErrorCode(20), "IllegalOperation through the proxy: %v", proxyErr)
	assert.Equal(t, directErr.Error(), proxyErr.Error())

	got := receivedWrites(fake, before)
	require.Len(t, got, 1)
	_, err = got[0].LookupErr("txnNumber")
	assert.NoError(t, err, "the transaction's insert reached the standalone with its txnNumber")
	assert.Equal(t, false, got[0].Lookup("autocommit").Boolean())
}
