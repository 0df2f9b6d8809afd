package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/transform"
)

const e2eToken = "e2e-secret-token"

// e2eSpec writes the users-v2 example spec with its stores moved to the given MongoDB URIs and
// database, and returns its path.
func e2eSpec(t *testing.T, sourceURI, targetURI, db string) string {
	t.Helper()
	data, err := os.ReadFile("../../examples/users-v2.yaml")
	require.NoError(t, err)
	s := string(data)
	s = strings.Replace(s, `mongodb: {uri: "mongodb://127.0.0.1:27017/", database: demo, collection: users}`,
		fmt.Sprintf(`mongodb: {uri: %q, database: %s, collection: users}`, sourceURI, db), 1)
	s = strings.Replace(s, `mongodb: {uri: "mongodb://127.0.0.1:27017/", database: demo, collection: users_v2}`,
		fmt.Sprintf(`mongodb: {uri: %q, database: %s, collection: users_v2}`, targetURI, db), 1)
	require.Contains(t, s, db+", collection: users_v2")
	path := filepath.Join(t.TempDir(), "users-v2.yaml")
	require.NoError(t, os.WriteFile(path, []byte(s), 0o600))
	return path
}

func tokenFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte(e2eToken+"\n"), 0o600))
	return path
}

func e2eUser(id string, n int) bson.D {
	return bson.D{
		{Key: "_id", Value: id}, {Key: "name", Value: fmt.Sprintf("User %s/%d", id, n)},
		{Key: "email", Value: fmt.Sprintf("%s@example%d.com", id, n%3)},
		{Key: "age", Value: int32(18 + n%60)},
		{Key: "created", Value: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Minute)},
	}
}

// workload is an application: writers that each own a set of keys (insert, replace, update,
// delete) and readers (look-ups by key, queries), all through the proxy, recording every error.
type workload struct {
	users   *mongo.Collection
	blocked atomic.Bool // the test has write_block on: NotWritablePrimary is expected then

	mu       sync.Mutex
	errs     []string
	blockErr int
	writes   atomic.Int64
	reads    atomic.Int64
}

func (w *workload) fail(op string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var se mongo.ServerError
	if w.blocked.Load() && errors.As(err, &se) && se.HasErrorCode(10107) {
		w.blockErr++
		return
	}
	w.errs = append(w.errs, fmt.Sprintf("%s: %v", op, err))
}

func (w *workload) run(ctx context.Context, writers, readers int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for n := 0; ctx.Err() == nil; n++ {
				id := fmt.Sprintf("w%d-%02d", i, rng.IntN(12))
				opCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				var err error
				switch r := rng.IntN(10); {
				case r < 4:
					_, err = w.users.ReplaceOne(opCtx, bson.D{{Key: "_id", Value: id}}, e2eUser(id, n), options.Replace().SetUpsert(true))
				case r < 8:
					_, err = w.users.UpdateOne(opCtx, bson.D{{Key: "_id", Value: id}},
						bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: fmt.Sprintf("Renamed %d", n)}}}})
				default:
					_, err = w.users.DeleteOne(opCtx, bson.D{{Key: "_id", Value: id}})
				}
				cancel()
				if err != nil {
					w.fail("write "+id, err)
				} else {
					w.writes.Add(1)
				}
			}
		}()
	}
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(100+i), 9))
			for ctx.Err() == nil {
				opCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				id := fmt.Sprintf("w%d-%02d", rng.IntN(max(writers, 1)), rng.IntN(12))
				var err error
				if rng.IntN(2) == 0 {
					var doc bson.M
					err = w.users.FindOne(opCtx, bson.D{{Key: "_id", Value: id}}).Decode(&doc)
					if err == nil && (doc["_id"] != id || doc["email"] == nil) {
						err = fmt.Errorf("look-up of %s returned %v", id, doc)
					}
					if errors.Is(err, mongo.ErrNoDocuments) {
						err = nil
					}
				} else {
					var cur *mongo.Cursor
					cur, err = w.users.Find(opCtx, bson.D{{Key: "age", Value: bson.D{{Key: "$gte", Value: 50}}}}, options.Find().SetLimit(5))
					if err == nil {
						var docs []bson.M
						err = cur.All(opCtx, &docs)
					}
				}
				cancel()
				if err != nil {
					w.fail("read "+id, err)
				} else {
					w.reads.Add(1)
				}
			}
		}()
	}
	return &wg
}

func (w *workload) errors() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errs...)
}

// expectStoresAgree reads both stores directly and checks new == transform(old) for every key
// of either; label, when not empty, starts every failure message (a seed, say).
func expectStoresAgree(t *testing.T, label string, spec *transform.Spec, old, new *mongo.Collection) int {
	t.Helper()
	ctx := context.Background()
	read := func(c *mongo.Collection) map[string]bson.D {
		cur, err := c.Find(ctx, bson.D{})
		require.NoError(t, err)
		var docs []bson.D
		require.NoError(t, cur.All(ctx, &docs))
		out := map[string]bson.D{}
		for _, d := range docs {
			k := d[0].Value.(string)
			_, dup := out[k]
			assert.False(t, dup, "%skey %s is twice in %s", label, k, c.Name())
			out[k] = d
		}
		return out
	}
	if label != "" {
		label += ": "
	}
	olds, news := read(old), read(new)
	for k, od := range olds {
		want, err := spec.Forward(od)
		require.NoError(t, err, "%skey %s", label, k)
		nd, ok := news[k]
		if !assert.True(t, ok, "%skey %s is in old, not in new", label, k) {
			continue
		}
		// Through the driver, so int32/int64 and field order compare as the new store holds them.
		raw, err := bson.Marshal(want)
		require.NoError(t, err)
		var wantD bson.D
		require.NoError(t, bson.Unmarshal(raw, &wantD))
		assert.Empty(t, transform.Diff(wantD, nd), "%skey %s differs", label, k)
	}
	for k := range news {
		_, ok := olds[k]
		assert.True(t, ok, "%skey %s is in new, not in old", label, k)
	}
	return len(olds)
}

// TestWorkloadThroughEveryPhase runs an application through the proxy while the migration moves
// off → shadow → dual → cutover → rollback → cutover, as an operator would with the CLI's API:
// no client sees an error outside write_block, and at the end old and new agree for every key.
func TestWorkloadThroughEveryPhase(t *testing.T) {
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	specPath := e2eSpec(t, store.URI(), store.URI(), "e2e")
	spec, err := transform.Load(specPath)
	require.NoError(t, err)

	proxyURI, adminURL, _, stop := runCommand(t, "proxy", "--upstream", store.URI(), "--spec", specPath,
		"--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--admin-token-file", tokenFile(t), "--flags-poll", "50ms")
	api, err := admin.NewClient(adminURL, e2eToken, nil)
	require.NoError(t, err)
	api.User = "e2e-operator"

	app, err := mongo.Connect(options.Client().ApplyURI(proxyURI).SetAppName("e2e-app"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = app.Disconnect(context.Background()) })
	direct, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = direct.Disconnect(context.Background()) })
	oldColl, newColl := direct.Database("e2e").Collection("users"), direct.Database("e2e").Collection("users_v2")

	w := &workload{users: app.Database("e2e").Collection("users")}
	ctx, cancel := context.WithCancel(context.Background())
	done := w.run(ctx, 4, 2)
	defer func() { cancel(); done.Wait() }()

	bg := context.Background()
	step := func(what string, f func() error) {
		t.Helper()
		require.NoError(t, f(), what)
		time.Sleep(1500 * time.Millisecond) // let the workload run in the new phase
		t.Logf("%s: %d writes, %d reads so far", what, w.writes.Load(), w.reads.Load())
	}
	step("off", func() error { return nil })
	step("shadow", func() error {
		_, err := api.Advance(bg, "users-v2", flags.PhaseShadow, "e2e: start shadowing")
		return err
	})
	step("dual", func() error {
		_, err := api.Advance(bg, "users-v2", flags.PhaseDual, "e2e: writes converge before the reply")
		return err
	})

	// The documents written before shadow are not in new yet (backfill's job): converge them
	// with a repairing verification, then a clean one for the gate.
	sum, err := api.Verify(bg, "users-v2", true)
	require.NoError(t, err)
	t.Logf("repairing verification: %+v", sum)
	require.Eventually(t, func() bool {
		sum, err = api.Verify(bg, "users-v2", false)
		return err == nil && sum.Clean
	}, 60*time.Second, 100*time.Millisecond, "a clean verification under load: %+v %v", sum, err)

	cutover := func(why string) {
		t.Helper()
		// The final switch: block writes, cut over, let writes through again.
		w.blocked.Store(true)
		_, err := api.Set(bg, "users-v2", map[string]string{flags.FlagWriteBlock: "true"}, why+": block writes for the switch")
		require.NoError(t, err)
		time.Sleep(300 * time.Millisecond)
		res, err := api.Cutover(bg, "users-v2", why)
		require.NoError(t, err, "gates: %+v", res.Gates)
		_, err = api.Set(bg, "users-v2", map[string]string{flags.FlagWriteBlock: "false"}, why+": switch done")
		require.NoError(t, err)
		time.Sleep(300 * time.Millisecond) // every connection has seen write_block=false
		w.blocked.Store(false)
	}
	step("cutover", func() error { cutover("e2e: first cutover"); return nil })
	step("rollback", func() error {
		v, err := api.Rollback(bg, "users-v2", "", "e2e: practising the rollback")
		if err == nil && (v.Phase != flags.PhaseDual || v.ReadSource != flags.ReadOld) {
			err = fmt.Errorf("rollback left %+v", v)
		}
		return err
	})
	step("cutover again", func() error { cutover("e2e: second cutover"); return nil })

	cancel()
	done.Wait()
	assert.Empty(t, w.errors(), "no client error outside write_block")
	t.Logf("workload: %d writes, %d reads, %d NotWritablePrimary answers during write_block", w.writes.Load(), w.reads.Load(), w.blockErr)
	require.Positive(t, w.writes.Load())
	require.Positive(t, w.reads.Load())
	// The switch windows did refuse writes (the driver retried them after the window), and key
	// look-ups were served from new while cut over.
	_, metrics := httpGet(t, adminURL+"/metrics")
	for _, action := range []string{"write_blocked", "read_new", "converged"} {
		assert.Regexp(t, `tandem_proxy_migration_requests_total\{action="`+action+`",migration="users-v2"\} [1-9]`, metrics)
	}

	// Every write of the last phase converged before its reply; wait only for stragglers of
	// the asynchronous phases that the journal worker may still be retrying.
	require.Eventually(t, func() bool {
		sum, err := api.Verify(bg, "users-v2", false)
		return err == nil && sum.Clean
	}, 30*time.Second, 200*time.Millisecond)
	n := expectStoresAgree(t, "", spec, oldColl, newColl)
	assert.Positive(t, n)

	hist, err := api.History(bg, "users-v2", 100)
	require.NoError(t, err)
	var phases []string
	for _, e := range hist {
		if e.Kind != "spec" {
			phases = append(phases, e.Who+" "+e.To)
		}
	}
	t.Logf("audit: %v", phases)
	assert.NotEmpty(t, phases)
	require.NoError(t, stop())
}

// startProxyProcess runs `tandem proxy` as a child process (the test binary re-executed, see
// TestMain) and returns its connection string and admin URL.
func startProxyProcess(t *testing.T, args ...string) (proxyURI, adminURL string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TANDEM_RUN_MAIN=1", "TANDEM_ARGS="+strings.Join(args, " "))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(90 * time.Second)
	for proxyURI == "" || adminURL == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("tandem proxy exited; stderr:\n%s", stderr.String())
			}
			if strings.Contains(l, "applications connect to") {
				proxyURI = uriRE.FindString(l)
			}
			if strings.Contains(l, "admin at") {
				adminURL = adminRE.FindString(l)
			}
		case <-deadline:
			t.Fatalf("tandem proxy printed no addresses; stderr:\n%s", stderr.String())
		}
	}
	return proxyURI, adminURL
}

// TestTwoProxyProcessesObeyAFlipWithinASecond starts two `tandem proxy` processes on one
// catalog and flips write_block through one of them: both refuse writes within a second, and
// both let them through within a second of the flip back.
func TestTwoProxyProcessesObeyAFlipWithinASecond(t *testing.T) {
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	specPath := e2eSpec(t, store.URI(), store.URI(), "two")
	tok := tokenFile(t)
	var uris, admins []string
	for range 2 {
		u, a := startProxyProcess(t, "proxy", "--upstream", store.URI(), "--spec", specPath, "--journal-embedded",
			"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token-file", tok)
		uris, admins = append(uris, u), append(admins, a)
	}
	api, err := admin.NewClient(admins[0], e2eToken, nil)
	require.NoError(t, err)
	bg := context.Background()
	_, err = api.Advance(bg, "users-v2", flags.PhaseShadow, "two proxies")
	require.NoError(t, err)

	colls := make([]*mongo.Collection, 2)
	for i, u := range uris {
		c, err := mongo.Connect(options.Client().ApplyURI(u).SetRetryWrites(false))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
		colls[i] = c.Database("two").Collection("users")
	}
	var n atomic.Int64
	blocked := func(coll *mongo.Collection) bool {
		id := fmt.Sprintf("p-%d", n.Add(1))
		_, err := coll.InsertOne(bg, e2eUser(id, int(n.Load())))
		var se mongo.ServerError
		return errors.As(err, &se) && se.HasErrorCode(10107)
	}
	for _, c := range colls {
		require.False(t, blocked(c))
	}
	for round := range 3 {
		for _, block := range []bool{true, false} {
			start := time.Now()
			_, err := api.Set(bg, "users-v2", map[string]string{flags.FlagWriteBlock: fmt.Sprint(block)}, "flip")
			require.NoError(t, err)
			for i, c := range colls {
				require.Eventually(t, func() bool { return blocked(c) == block }, time.Second, 10*time.Millisecond,
					"round %d: proxy %d did not obey write_block=%v within 1s", round, i, block)
				t.Logf("round %d: proxy %d obeys write_block=%v after %s", round, i, block, time.Since(start).Round(time.Millisecond))
			}
		}
	}
}

// TestShadowTargetDownDuringShadow stops the new store while the application writes in phase
// shadow: every client write succeeds, and once the new store is back every key converges.
func TestShadowTargetDownDuringShadow(t *testing.T) {
	oldStore, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(oldStore.Stop)
	newDir := t.TempDir()
	newStore, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: newDir})
	require.NoError(t, err)
	newAddr := strings.TrimSuffix(strings.TrimPrefix(newStore.URI(), "mongodb://"), "/")
	specPath := e2eSpec(t, oldStore.URI(), newStore.URI()+"?serverSelectionTimeoutMS=1000", "down")
	spec, err := transform.Load(specPath)
	require.NoError(t, err)

	proxyURI, adminURL, _, stop := runCommand(t, "proxy", "--upstream", oldStore.URI(), "--spec", specPath,
		"--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--admin-token-file", tokenFile(t), "--flags-poll", "50ms", "--converge-timeout", "2s")
	api, err := admin.NewClient(adminURL, e2eToken, nil)
	require.NoError(t, err)
	bg := context.Background()
	_, err = api.Advance(bg, "users-v2", flags.PhaseShadow, "shadow target outage test")
	require.NoError(t, err)
	app, err := mongo.Connect(options.Client().ApplyURI(proxyURI))
	require.NoError(t, err)
	t.Cleanup(func() { _ = app.Disconnect(context.Background()) })
	users := app.Database("down").Collection("users")
	time.Sleep(200 * time.Millisecond) // the proxy has seen phase shadow

	write := func(from, to int) {
		for i := from; i < to; i++ {
			id := fmt.Sprintf("k%03d", i)
			_, err := users.ReplaceOne(bg, bson.D{{Key: "_id", Value: id}}, e2eUser(id, i), options.Replace().SetUpsert(true))
			require.NoError(t, err, "a client write must succeed while the shadow target is down")
		}
	}
	write(0, 10)
	newStore.Stop()
	write(10, 40)
	_, err = users.DeleteOne(bg, bson.D{{Key: "_id", Value: "k003"}})
	require.NoError(t, err)

	restarted, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: newDir, Addr: newAddr})
	require.NoError(t, err)
	t.Cleanup(restarted.Stop)
	direct, err := mongo.Connect(options.Client().ApplyURI(oldStore.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = direct.Disconnect(context.Background()) })
	directNew, err := mongo.Connect(options.Client().ApplyURI(restarted.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = directNew.Disconnect(context.Background()) })
	newColl := directNew.Database("down").Collection("users_v2")
	require.Eventually(t, func() bool {
		n, err := newColl.CountDocuments(bg, bson.D{})
		return err == nil && n == 39
	}, 90*time.Second, 250*time.Millisecond, "every key converges once the new store is back")
	expectStoresAgree(t, "", spec, direct.Database("down").Collection("users"), newColl)
	require.NoError(t, stop())
}

// TestFlagdProviderSteersTheProxy runs the proxy with flags from a flagd file instead of the
// catalog: phase shadow in the file makes writes converge.
func TestFlagdProviderSteersTheProxy(t *testing.T) {
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	specPath := e2eSpec(t, store.URI(), store.URI(), "flagd")
	file, err := flags.FlagdFile(map[string]flags.Values{"users-v2": {Phase: flags.PhaseShadow, ReadSource: flags.ReadOld}})
	require.NoError(t, err)
	flagdPath := filepath.Join(t.TempDir(), "flags.json")
	require.NoError(t, os.WriteFile(flagdPath, file, 0o600))

	proxyURI, _, _, stop := runCommand(t, "proxy", "--upstream", store.URI(), "--spec", specPath, "--journal-embedded",
		"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--flags-provider", "flagd", "--flagd-file", flagdPath)
	app, err := mongo.Connect(options.Client().ApplyURI(proxyURI))
	require.NoError(t, err)
	t.Cleanup(func() { _ = app.Disconnect(context.Background()) })
	_, err = app.Database("flagd").Collection("users").InsertOne(context.Background(), e2eUser("f1", 1))
	require.NoError(t, err)
	direct, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = direct.Disconnect(context.Background()) })
	require.Eventually(t, func() bool {
		n, err := direct.Database("flagd").Collection("users_v2").CountDocuments(context.Background(), bson.D{{Key: "_id", Value: "f1"}})
		return err == nil && n == 1
	}, 10*time.Second, 50*time.Millisecond, "phase shadow from the flagd file makes the write converge")
	require.NoError(t, stop())
}

func TestMigrationFlagsAreChecked(t *testing.T) {
	up := []string{"proxy", "--upstream", "mongodb://127.0.0.1:1/", "--listen", "127.0.0.1:0", "--admin", ""}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--spec", "x.yaml"}, "--spec needs a journal"},
		{[]string{"--spec", "x.yaml", "--journal-embedded", "--kafka-brokers", "a:1"}, "exclude each other"},
		{[]string{"--spec", "x.yaml", "--kafka-brokers", "nohost"}, "--kafka-brokers \"nohost\""},
		{[]string{"--spec", "x.yaml", "--kafka-brokers", " , "}, "names no broker"},
		{[]string{"--spec", "x.yaml", "--journal-embedded", "--flags-provider", "etcd"}, "--flags-provider \"etcd\""},
		{[]string{"--spec", "x.yaml", "--journal-embedded", "--flags-provider", "flagd"}, "needs --flagd-file"},
		{[]string{"--spec", "x.yaml", "--journal-embedded", "--flags-poll", "1ms"}, "--flags-poll 1ms"},
		{[]string{"--spec", "x.yaml", "--journal-embedded", "--shadow-workers", "0"}, "--shadow-workers 0"},
		{[]string{"--spec", "x.yaml", "--journal-embedded", "--auto-rollback-mismatch-rate", "2"}, "are shares"},
		{[]string{"--spec", "/nonexistent/spec.yaml", "--journal-embedded"}, "/nonexistent/spec.yaml"},
		{[]string{"--spec", "x.yaml", "--journal-embedded", "--admin-token-file", "/nonexistent/token"}, "--admin-token-file"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut syncBuffer
			cmd := newRootCmd(&out, &errOut)
			cmd.SetArgs(append(append([]string(nil), up...), tt.args...))
			err := cmd.ExecuteContext(context.Background())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			var ue usageError
			assert.True(t, errors.As(err, &ue), "a bad flag is a usage error (exit status 2): %v", err)
		})
	}
}

// TestAutomaticRollbackOnNewStoreErrors stops the new store in phase dual: the watchdog sees the
// new store's error rate cross its threshold and rolls back to shadow, recorded in the audit
// trail, while client writes keep succeeding.
func TestAutomaticRollbackOnNewStoreErrors(t *testing.T) {
	oldStore, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(oldStore.Stop)
	newStore, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(newStore.Stop)
	specPath := e2eSpec(t, oldStore.URI(), newStore.URI()+"?serverSelectionTimeoutMS=500", "auto")

	proxyURI, adminURL, _, stop := runCommand(t, "proxy", "--upstream", oldStore.URI(), "--spec", specPath,
		"--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token-file", tokenFile(t),
		"--flags-poll", "50ms", "--converge-timeout", "700ms",
		"--auto-rollback-min-samples", "5", "--auto-rollback-window", "30s", "--auto-rollback-error-rate", "0.5")
	api, err := admin.NewClient(adminURL, e2eToken, nil)
	require.NoError(t, err)
	bg := context.Background()
	for _, p := range []string{flags.PhaseShadow, flags.PhaseDual} {
		_, err = api.Advance(bg, "users-v2", p, "auto-rollback test")
		require.NoError(t, err)
	}
	app, err := mongo.Connect(options.Client().ApplyURI(proxyURI))
	require.NoError(t, err)
	t.Cleanup(func() { _ = app.Disconnect(context.Background()) })
	users := app.Database("auto").Collection("users")
	time.Sleep(200 * time.Millisecond) // the proxy has seen phase dual

	newStore.Stop()
	for i := 0; ; i++ {
		v, err := api.Get(bg, "users-v2")
		require.NoError(t, err)
		if v.Phase == flags.PhaseShadow {
			assert.Equal(t, flags.ReadOld, v.ReadSource)
			break
		}
		require.Less(t, i, 60, "no automatic rollback after %d failing writes", i)
		id := fmt.Sprintf("a%02d", i)
		_, err = users.InsertOne(bg, e2eUser(id, i))
		require.NoError(t, err, "in dual a failed converge never fails the client's write")
	}
	hist, err := api.History(bg, "users-v2", 1)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	assert.Contains(t, hist[0].Who, "tandem watchdog")
	assert.Contains(t, hist[0].Why, "error rate")
	t.Logf("audit: %s: %s", hist[0].Who, hist[0].Why)
	require.NoError(t, stop())
}
