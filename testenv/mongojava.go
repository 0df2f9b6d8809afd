package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ErrMongoJavaMissing means Java or mongo-java-server is not installed: `make mongojava` puts its
// jars into .cache/mongojava/lib and the launcher into .cache/mongojava/classes.
var ErrMongoJavaMissing = errors.New("mongo-java-server is not installed (run `make mongojava`)")

// mongoJavaStartTimeout bounds how long StartMongoJava waits for the server's port (~1 s on two
// idle cores).
const mongoJavaStartTimeout = 60 * time.Second

// mongoJavaJVMOptions: the C1 compiler alone starts sooner, and the tests' oplogs are small.
var mongoJavaJVMOptions = []string{
	"-Xms32m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
	"-Djava.awt.headless=true", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
}

// MongoJava is a running mongo-java-server with change streams, started from the launcher of
// testenv/mongojava (which makes its change events follow MongoDB's format: see the README's
// test section). It is a standalone server: no sessions, no transactions.
type MongoJava struct {
	uri      string
	cmd      *exec.Cmd
	done     chan struct{}
	out      *Output
	stopOnce sync.Once
}

// URI is the server's connection string, mongodb://127.0.0.1:PORT/.
func (m *MongoJava) URI() string { return m.uri }

// PID is the server's process id.
func (m *MongoJava) PID() int { return m.cmd.Process.Pid }

// Log is the server's output (warnings and errors).
func (m *MongoJava) Log() string { return m.out.String() }

// MongoJavaDir returns the folder of the installed server: $TANDEM_MONGOJAVA, or else
// .cache/mongojava in the folder of the go.mod above the working directory.
func MongoJavaDir() (string, error) {
	if d := os.Getenv("TANDEM_MONGOJAVA"); d != "" {
		return d, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("mongo-java-server: %v: %w", err, ErrMongoJavaMissing)
	}
	return filepath.Join(root, ".cache", "mongojava"), nil
}

// MongoJavaOptions configure StartMongoJava.
type MongoJavaOptions struct {
	// DataFile is an H2 file that keeps data and oplog across a restart (Stop, then a start on
	// the same file). Optional; default: in memory.
	DataFile string
}

// StartMongoJava starts mongo-java-server on a free loopback port and returns once it listens
// and answers a ping. The caller must Stop it. A missing installation gives an error wrapping
// ErrMongoJavaMissing.
func StartMongoJava(ctx context.Context, o MongoJavaOptions) (*MongoJava, error) {
	dir, err := MongoJavaDir()
	if err != nil {
		return nil, err
	}
	if !fileExists(filepath.Join(dir, "classes", "tandem", "testenv", "Launcher.class")) {
		return nil, fmt.Errorf("mongo-java-server: no launcher in %s: %w", dir, ErrMongoJavaMissing)
	}
	javaBin, err := java()
	if err != nil {
		return nil, fmt.Errorf("mongo-java-server: %v: %w", err, ErrMongoJavaMissing)
	}
	args := append([]string{}, mongoJavaJVMOptions...)
	args = append(args, "-cp", filepath.Join(dir, "classes")+string(os.PathListSeparator)+filepath.Join(dir, "lib", "*"),
		"tandem.testenv.Launcher")
	if o.DataFile != "" {
		args = append(args, o.DataFile)
	}
	m := &MongoJava{done: make(chan struct{}), out: &Output{Max: 64 << 10}}
	m.cmd = exec.Command(javaBin, args...) // not CommandContext: the server outlives ctx
	m.cmd.Stderr = m.out
	m.cmd.SysProcAttr = sysProcAttr()
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("mongo-java-server: %w", err)
	}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("mongo-java-server: starting %s: %v: %w", javaBin, err, ErrMongoJavaMissing)
	}
	go func() {
		_ = m.cmd.Wait()
		close(m.done)
	}()
	port := make(chan int, 1)
	go readPort(stdout, port, m.out)
	timer := time.NewTimer(mongoJavaStartTimeout)
	defer timer.Stop()
	select {
	case p := <-port:
		m.uri = fmt.Sprintf("mongodb://127.0.0.1:%d/", p)
	case <-m.done:
		return nil, fmt.Errorf("mongo-java-server exited while starting (%s): %s", m.cmd.ProcessState, lastLine(m.Log()))
	case <-ctx.Done():
		m.Stop()
		return nil, fmt.Errorf("mongo-java-server: waiting for its port: %w", ctx.Err())
	case <-timer.C:
		m.Stop()
		return nil, fmt.Errorf("mongo-java-server: no port after %s: %s", mongoJavaStartTimeout, lastLine(m.Log()))
	}
	if err := m.ping(ctx); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

// readPort reads the launcher's "PORT n" line, then copies the rest of its output to rest.
func readPort(r io.Reader, port chan<- int, rest io.Writer) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "PORT "); ok {
			if n, err := strconv.Atoi(p); err == nil {
				port <- n
				break
			}
		}
		fmt.Fprintln(rest, line)
	}
	_, _ = io.Copy(rest, r)
}

func (m *MongoJava) ping(ctx context.Context) error {
	c, err := mongo.Connect(options.Client().ApplyURI(m.uri).SetServerSelectionTimeout(20 * time.Second))
	if err != nil {
		return fmt.Errorf("mongo-java-server: %w", err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	if err := c.Ping(ctx, nil); err != nil {
		return fmt.Errorf("mongo-java-server at %s does not answer: %w: %s", m.uri, err, lastLine(m.Log()))
	}
	return nil
}

// Stop kills the server by its PID and waits for it to exit. It may be called more than once.
// With a DataFile, writes of the last few hundred milliseconds may be lost (H2 commits in the
// background); stop with Terminate to keep them.
func (m *MongoJava) Stop() {
	m.stopOnce.Do(func() {
		_ = m.cmd.Process.Kill()
		<-m.done
	})
}

// Terminate stops the server with SIGTERM, which lets H2 write its last changes, and waits (at
// most 30 s, then it kills it).
func (m *MongoJava) Terminate() {
	m.stopOnce.Do(func() {
		_ = m.cmd.Process.Signal(os.Interrupt)
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
	})
}

// TrimOplog makes the server forget every oplog entry so far, as a capped oplog forgets its
// oldest entries: a change stream resumed from any earlier position then fails with
// ChangeStreamHistoryLost (code 286). It runs the launcher's tandemTrimOplog command.
func TrimOplog(ctx context.Context, c *mongo.Client) error {
	err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "tandemTrimOplog", Value: 1}}).Err()
	if err != nil {
		return fmt.Errorf("trimming the oplog: %w", err)
	}
	return nil
}

// MongoJavaRequired reports whether tests must fail, not skip, without mongo-java-server:
// TANDEM_REQUIRE_MONGOJAVA=1 or TANDEM_REQUIRE_CLIENTS=1 (which `make test` sets).
func MongoJavaRequired() bool {
	return required("TANDEM_REQUIRE_MONGOJAVA")
}

// SkipOrFailMongoJava ends a test that could not start mongo-java-server: with t.Skip when it
// is not installed and not required, with t.Fatal otherwise; nil does nothing.
func SkipOrFailMongoJava(tb testing.TB, err error) {
	tb.Helper()
	skipOrFail(tb, err, ErrMongoJavaMissing, "TANDEM_REQUIRE_MONGOJAVA", "mongo-java-server", "change-stream tests")
}

// StartMongoJavaT starts a server for one test and stops it when the test ends; see
// SkipOrFailMongoJava.
func StartMongoJavaT(tb testing.TB, o MongoJavaOptions) *MongoJava {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mongoJavaStartTimeout+30*time.Second)
	defer cancel()
	m, err := StartMongoJava(ctx, o)
	SkipOrFailMongoJava(tb, err)
	tb.Cleanup(m.Stop)
	return m
}
