package embedmongo

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The temporary data folder of a process that ended without Stop is removed by the next Start;
// one whose process lives, or that has no owner file, is not. Stop removes the server's own.
func TestStartRemovesStaleTempDirs(t *testing.T) {
	exited := exec.Command("true")
	require.NoError(t, exited.Run())
	owners := map[string]string{"stale": strconv.Itoa(exited.Process.Pid), "live": strconv.Itoa(os.Getpid()), "no owner": ""}
	paths := map[string]string{}
	for name, pid := range owners {
		d, err := os.MkdirTemp("", tempDirPrefix)
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		if pid != "" {
			require.NoError(t, os.WriteFile(filepath.Join(d, "owner"), []byte(pid), 0o644))
		}
		paths[name] = d
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{})
	require.NoError(t, err)
	assert.NoDirExists(t, paths["stale"])
	assert.DirExists(t, paths["live"])
	assert.DirExists(t, paths["no owner"])
	owner, err := os.ReadFile(filepath.Join(s.Dir(), "owner"))
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(os.Getpid()), string(owner))
	s.Stop()
	assert.NoDirExists(t, s.Dir())
}

// FerretDB on a private PostgreSQL cluster: documents written are read back, and Stop stops
// the cluster and removes its folder. It needs PostgreSQL's initdb and pg_ctl (the benchmarks
// use this backend); without them it is skipped, unless TANDEM_REQUIRE_POSTGRES is set.
func TestPostgreSQLBackend(t *testing.T) {
	if _, err := pgBinDir(""); err != nil {
		if os.Getenv("TANDEM_REQUIRE_POSTGRES") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := StartPostgreSQL(ctx, PostgreSQLOptions{})
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = pg.Stop()
		}
	})
	pid, err := os.ReadFile(filepath.Join(pg.Dir(), "data", "postmaster.pid"))
	require.NoError(t, err)
	s, err := Start(ctx, Options{PostgreSQLURL: pg.URL()})
	require.NoError(t, err)
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
	require.NoError(t, err)
	coll := c.Database("pgtest").Collection("docs")
	_, err = coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: "a"}, {Key: "v", Value: int32(1)}}, bson.D{{Key: "_id", Value: "b"}}})
	require.NoError(t, err)
	var got bson.D
	require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&got))
	assert.Equal(t, bson.D{{Key: "_id", Value: "a"}, {Key: "v", Value: int32(1)}}, got)
	require.NoError(t, c.Disconnect(ctx))
	s.Stop()

	require.NoError(t, pg.Stop())
	stopped = true
	assert.NoDirExists(t, pg.Dir())
	postmaster, err := strconv.Atoi(strings.SplitN(string(pid), "\n", 2)[0])
	require.NoError(t, err)
	// pg_ctl stop returns when the server has removed its pid file, just before it exits.
	assert.Eventually(t, func() bool { return processGone(postmaster) }, 30*time.Second, 50*time.Millisecond,
		"postgres (pid %d) still runs after Stop", postmaster)
}
