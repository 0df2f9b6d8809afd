package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestMain lets the test binary act as the tandem binary when TANDEM_RUN_MAIN is set, so the
// signal handling of main itself can be tested in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("TANDEM_RUN_MAIN") == "1" {
		args := strings.Fields(os.Getenv("TANDEM_ARGS"))
		if j := os.Getenv("TANDEM_ARGS_JSON"); j != "" {
			if err := json.Unmarshal([]byte(j), &args); err != nil {
				panic(err)
			}
		}
		os.Args = append([]string{"tandem"}, args...)
		main()
		os.Exit(0)
	}
	if role := os.Getenv("TANDEM_CONVERGE_CHILD"); role != "" {
		os.Exit(convergeChildMain(role))
	}
	os.Exit(m.Run())
}

// TestDemoStopsCleanlyOnSIGINT runs `tandem demo` as a process, uses it, and sends it SIGINT
// (Ctrl-C): it must exit with status 0.
func TestDemoStopsCleanlyOnSIGINT(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TANDEM_RUN_MAIN=1",
		"TANDEM_ARGS=demo --seed 3 --data "+t.TempDir()+" --listen 127.0.0.1:0 --store-listen 127.0.0.1:0 --admin 127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	uri := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := uriRE.FindString(sc.Text()); m != "" && strings.Contains(sc.Text(), "applications connect to") {
				uri <- m
			}
		}
	}()
	var proxyURI string
	select {
	case proxyURI = <-uri:
	case <-time.After(60 * time.Second):
		t.Fatalf("no connection string printed; stderr:\n%s", stderr.String())
	}

	client, err := mongo.Connect(options.Client().ApplyURI(proxyURI))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := client.Database("demo").Collection("users").CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
	require.NoError(t, client.Disconnect(ctx))

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		assert.NoError(t, err, "exit status after SIGINT; stderr:\n%s", stderr.String())
		assert.Contains(t, stderr.String(), "shutting down")
	case <-time.After(30 * time.Second):
		t.Fatal("tandem demo did not exit within 30s of SIGINT")
	}
}
