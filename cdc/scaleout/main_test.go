package scaleout_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/testenv"
)

// The children of these tests are this test binary started again with TANDEM_SCALEOUT_ROLE set
// ("leader": a contender of the counter job, leader_kill_test.go; "worker": a journal worker,
// journal_group_test.go), talking to the parent's embedded FerretDB and Kafka broker.
const (
	envRole    = "TANDEM_SCALEOUT_ROLE"
	envName    = "TANDEM_SCALEOUT_NAME"
	envURI     = "TANDEM_SCALEOUT_URI"
	envDB      = "TANDEM_SCALEOUT_DB"
	envBrokers = "TANDEM_SCALEOUT_BROKERS"
	envTopic   = "TANDEM_SCALEOUT_TOPIC"
)

// waitLimit bounds every wait of these tests: a limit for a hung test, not a timing assertion.
const waitLimit = 2 * time.Minute

var (
	client    *mongo.Client
	serverURI string
)

// TestMain runs the tests against one embedded FerretDB, or acts as a child process.
func TestMain(m *testing.M) {
	switch os.Getenv(envRole) {
	case "leader":
		os.Exit(leaderMain())
	case "worker":
		os.Exit(workerMain())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	srv, err := embedmongo.Start(ctx, embedmongo.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting embedded FerretDB:", err)
		os.Exit(1)
	}
	serverURI = srv.URI()
	if client, err = mongo.Connect(options.Client().ApplyURI(serverURI)); err != nil {
		srv.Stop()
		fmt.Fprintln(os.Stderr, "connecting to embedded FerretDB:", err)
		os.Exit(1)
	}
	code := m.Run()
	if kafka != nil {
		kafka.Stop()
	}
	_ = client.Disconnect(context.Background())
	srv.Stop()
	os.Exit(code)
}

// childLog is a child's logger: its stderr, which the parent keeps and shows on failure.
func childLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("child", os.Getenv(envName))
}

// child is a running child process and its output.
type child struct {
	name   string
	cmd    *exec.Cmd
	out    *syncBuilder
	done   chan struct{} // closed once it has exited
	killed atomic.Bool   // the test killed it
}

// watched are the children of the running test that must not exit by themselves: eventually
// fails at once when one does, instead of waiting for a condition that will not come.
var watched []*child

// startChild starts this binary as a child of role with env added.
func startChild(t *testing.T, role, name string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), envRole+"="+role, envName+"="+name, envURI+"="+serverURI), env...)
	c := &child{name: name, cmd: cmd, out: &syncBuilder{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting child %s: %v", name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	watched = append(watched, c)
	t.Cleanup(func() {
		watched = nil
		c.kill()
		if t.Failed() {
			t.Logf("child %s:\n%s", name, c.out.String())
		}
	})
	return c
}

// kill SIGKILLs the child by its pid and waits for it to exit.
func (c *child) kill() {
	c.killed.Store(true)
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// syncBuilder is a strings.Builder safe for the writes of a child's stdout and stderr.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond every 50ms until it holds, or fails the test after waitLimit.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	limit := time.Now().Add(waitLimit)
	for !cond() {
		for _, c := range watched {
			select {
			case <-c.done:
				if !c.killed.Load() {
					t.Fatalf("waiting for %s: child %s exited (%s):\n%s", what, c.name, c.cmd.ProcessState, c.out.String())
				}
			default:
			}
		}
		if time.Now().After(limit) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The binary's Apache Kafka broker, started on first use.
var (
	kafkaOnce sync.Once
	kafka     *testenv.Kafka
	kafkaErr  error
)

func kafkaBroker(tb testing.TB) *testenv.Kafka {
	tb.Helper()
	kafkaOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		kafka, kafkaErr = testenv.StartKafka(ctx)
	})
	testenv.SkipOrFailKafka(tb, kafkaErr)
	return kafka
}
