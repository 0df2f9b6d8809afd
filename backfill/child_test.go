package backfill_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/testenv"
)

// childRate is the crash tests' children's copy rate in documents/s: slow enough that a kill
// test's dozen kills land inside the copy (with the store out of process a child copied 700
// documents in seven kills), fast enough that a run ends in seconds.
const childRate = 150

// childMain is a backfill process for the crash tests: it runs the backfill of the database
// and migration its environment names, against the parent's FerretDB, and exits 0 when every
// partition is done.
func childMain() int {
	c, err := mongo.Connect(options.Client().ApplyURI(os.Getenv("TANDEM_BACKFILL_URI")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: connect:", err)
		return 2
	}
	client = c
	// FerretDB may answer "interrupted" while it tears down the connections of a killed child
	// (its SQLite interrupts a statement when the context of a dead client's command ends, and
	// under the race detector that can go on for a while).
	var e *env
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		if e, err = openEnv(os.Getenv("TANDEM_BACKFILL_DB"), os.Getenv("TANDEM_BACKFILL_MIGRATION"), ""); err == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		return 2
	}
	cfg := e.config()
	cfg.Owner = "child-" + os.Getenv("TANDEM_BACKFILL_CHILD")
	cfg.Rate = childRate
	// Warnings go to the output the test prints when a run fails: they say why a run that
	// stopped making progress kept retrying.
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if _, err := backfill.Run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child: run:", err)
		return 1
	}
	return 0
}

// child starts a backfill process of e's migration; name labels it.
func (e *env) child(name string) (*exec.Cmd, *testenv.Output, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TANDEM_BACKFILL_CHILD="+name, "TANDEM_BACKFILL_URI="+mongoURI(),
		"TANDEM_BACKFILL_DB="+e.db, "TANDEM_BACKFILL_MIGRATION="+e.migration)
	out := &testenv.Output{}
	cmd.Stderr, cmd.Stdout = out, out
	return cmd, out, cmd.Start()
}

func mongoURI() string { return serverURI }

// waitExit waits up to d for cmd to exit.
func waitExit(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		// SIGQUIT first: the Go runtime prints every goroutine's stack into the output, which
		// says where a hung child was.
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		return fmt.Errorf("did not exit within %s", d)
	}
}
