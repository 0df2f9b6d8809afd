package testenv

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestKafkaServesAndStops(t *testing.T) {
	start := time.Now()
	k := StartKafkaT(t)
	t.Logf("Kafka broker (pid %d) ready after %s", k.PID(), time.Since(start).Round(time.Millisecond))
	require.Len(t, k.Brokers(), 1)
	assert.Regexp(t, `^127\.0\.0\.1:\d+$`, k.Brokers()[0])

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...), kgo.DefaultProduceTopic("t"),
		kgo.ConsumeTopics("t"), kgo.ConsumerGroup("g"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	_, err = kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "t")
	require.NoError(t, err)
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("v")}).FirstErr())
	fetches := cl.PollRecords(ctx, 1)
	require.NoError(t, fetches.Err())
	require.Equal(t, 1, fetches.NumRecords())
	assert.Equal(t, "v", string(fetches.Records()[0].Value))
	require.NoError(t, cl.CommitUncommittedOffsets(ctx))
	cl.Close()

	dir, pid := k.dir, k.PID()
	assert.Contains(t, k.Log(), "Kafka Server started", "the log file is written and readable")
	k.Stop()
	k.Stop() // a second Stop is harmless
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "the process is gone")
	_, err = os.Stat(dir)
	assert.ErrorIs(t, err, os.ErrNotExist, "the data folder is removed")
	assert.Contains(t, k.Log(), "Kafka Server started", "the log outlives the folder")
}

// TestKafkaKeepsTemporaryFilesInItsFolder produces a batch in each codec whose library unpacks
// native code (snappy, lz4, zstd), then reads which files the broker's process has mapped or
// open: the native libraries come from its own folder's tmp, which Stop removes, nothing comes
// from /tmp (or $TMPDIR) outside that folder, and there is no perf data file. Looking at the
// broker's process alone keeps the test apart from what other processes write to /tmp.
func TestKafkaKeepsTemporaryFilesInItsFolder(t *testing.T) {
	k := StartKafkaT(t)
	pid := k.PID()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/maps", pid)); err != nil {
		t.Skipf("no /proc/%d/maps to read the broker's files from: %v", pid, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...))
	require.NoError(t, err)
	defer adm.Close()
	_, err = kadm.NewClient(adm).CreateTopic(ctx, 1, 1, nil, "compressed")
	require.NoError(t, err)
	value := bytes.Repeat([]byte("compressible "), 100)
	for _, codec := range []kgo.CompressionCodec{kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...), kgo.DefaultProduceTopic("compressed"), kgo.ProducerBatchCompression(codec))
		require.NoError(t, err)
		require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr())
		cl.Close()
	}

	own := filepath.Join(k.dir, "tmp") + string(filepath.Separator)
	files := processFiles(t, pid)
	for _, lib := range []string{"snappy", "lz4", "zstd"} {
		found := false
		for _, f := range files {
			if strings.Contains(filepath.Base(f), lib) && strings.Contains(f, ".so") {
				found = true
				assert.True(t, strings.HasPrefix(f, own), "the %s library is unpacked into the broker's folder (%s), not %s", lib, own, f)
			}
		}
		assert.True(t, found, "the broker loaded the native %s library (a %s batch arrived): %v", lib, lib, files)
	}
	// The repository may itself live under /tmp (CI clones there): its files are not temporary.
	repo, err := filepath.Abs("..")
	require.NoError(t, err)
	for _, tmp := range slices.Compact([]string{"/tmp/", filepath.Clean(os.TempDir()) + string(filepath.Separator)}) {
		for _, f := range files {
			if strings.HasPrefix(f, tmp) && !strings.HasPrefix(f, k.dir+string(filepath.Separator)) && !strings.HasPrefix(f, repo+string(filepath.Separator)) {
				t.Errorf("the broker uses %s, in %s but not in its own folder %s", f, tmp, k.dir)
			}
		}
	}
	u, err := user.Current()
	require.NoError(t, err)
	assert.NoFileExists(t, filepath.Join("/tmp", "hsperfdata_"+u.Username, strconv.Itoa(pid)), "the JVM writes no perf data")

	k.Stop()
	assert.NoDirExists(t, k.dir, "Stop removes the folder, and the unpacked libraries with it")
}

// processFiles returns the paths of the files that process pid has mapped into memory (its
// native libraries among them) or open, without a " (deleted)" suffix.
func processFiles(t *testing.T, pid int) []string {
	t.Helper()
	seen := map[string]bool{}
	mapped, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	require.NoError(t, err)
	for line := range strings.Lines(string(mapped)) {
		// address perms offset dev inode path
		if fields := strings.Fields(line); len(fields) >= 6 && strings.HasPrefix(fields[5], "/") {
			seen[strings.TrimSuffix(strings.Join(fields[5:], " "), " (deleted)")] = true
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	for _, fd := range fds {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(target, "/") {
			seen[strings.TrimSuffix(target, " (deleted)")] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

func TestKafkaMissing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("no jars", func(t *testing.T) {
		t.Setenv("TANDEM_KAFKA_LIB", t.TempDir())
		_, err := StartKafka(ctx)
		assert.ErrorIs(t, err, ErrKafkaMissing)
		assert.ErrorContains(t, err, "no kafka_2.13 jar")
	})
	t.Run("no java", func(t *testing.T) {
		lib := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(lib, "kafka_2.13-4.4.0.jar"), nil, 0o644))
		t.Setenv("TANDEM_KAFKA_LIB", lib)
		t.Setenv("JAVA_HOME", "")
		t.Setenv("PATH", t.TempDir())
		_, err := StartKafka(ctx)
		assert.ErrorIs(t, err, ErrKafkaMissing)
	})
	t.Run("default is .cache/kafka/lib above go.mod", func(t *testing.T) {
		t.Setenv("TANDEM_KAFKA_LIB", "")
		lib, err := KafkaLib()
		require.NoError(t, err)
		root := filepath.Dir(filepath.Dir(filepath.Dir(lib)))
		assert.Equal(t, filepath.Join(root, ".cache", "kafka", "lib"), lib)
		_, err = os.Stat(filepath.Join(root, "go.mod"))
		assert.NoError(t, err)
	})
}

// A broken jar folder (here: jars that are not jars) is an install that exists but cannot run:
// that fails, not skips, as the broker's own error.
func TestKafkaExitsEarly(t *testing.T) {
	lib := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(lib, "kafka_2.13-4.4.0.jar"), []byte("not a jar"), 0o644))
	t.Setenv("TANDEM_KAFKA_LIB", lib)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := StartKafka(ctx)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrKafkaMissing)
	assert.ErrorContains(t, err, "formatting")
}

// The folder of a broker whose process is gone is removed by the next start; one whose process
// lives, or that has no pid file yet, is not.
func TestKafkaRemovesStaleDirs(t *testing.T) {
	exited := exec.Command("true")
	require.NoError(t, exited.Run())
	dirs := map[string]string{"stale": strconv.Itoa(exited.Process.Pid), "live": strconv.Itoa(os.Getpid()), "formatting": ""}
	paths := map[string]string{}
	for name, pid := range dirs {
		d, err := os.MkdirTemp("", kafkaDirPrefix)
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		if pid != "" {
			require.NoError(t, os.WriteFile(filepath.Join(d, "pid"), []byte(pid), 0o644))
		}
		paths[name] = d
	}
	removeStaleKafkaDirs()
	assert.NoDirExists(t, paths["stale"])
	assert.DirExists(t, paths["live"])
	assert.DirExists(t, paths["formatting"])
}
