package embedmongo

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
