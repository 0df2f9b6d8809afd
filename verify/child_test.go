package verify_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/verify"
)

// childMain is a verifier process for the crash tests: it runs (or joins, or resumes) the
// verification of the fixture database its environment names, against the parent's FerretDB,
// and exits 0 when the run is finished; with TANDEM_VERIFY_CONTINUOUS set it runs continuous
// verification (continuousConfig) until it is killed.
func childMain() int {
	c, err := mongo.Connect(options.Client().ApplyURI(os.Getenv("TANDEM_VERIFY_URI")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: connect:", err)
		return 2
	}
	client = c
	// FerretDB may answer "interrupted" while it tears down the connections of a killed child.
	var f *fixture
	for attempt := 0; attempt < 20; attempt++ {
		if f, err = openFixture(os.Getenv("TANDEM_VERIFY_DB")); err == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		return 2
	}
	cfg := f.childConfig("child-" + os.Getenv("TANDEM_VERIFY_CHILD"))
	if plan := os.Getenv("TANDEM_VERIFY_PLAN"); plan != "" {
		cfg.Plan, cfg.SpillDir = plan, os.Getenv("TANDEM_VERIFY_SPILL")
		// Buckets many, and a bucket's join slowed down, so that
		// kills land in the scans, between a batch's spill and its checkpoint, and in the join.
		cfg.Buckets = 64
		verify.SetAfterBatch(&cfg, func() { time.Sleep(10 * time.Millisecond) })
	}
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if os.Getenv("TANDEM_VERIFY_CONTINUOUS") != "" {
		f.continuousConfig(&cfg)
		// It runs until killed; should the test die first, it stops on its own.
		if err := verify.Continuous(untilOrphaned(), cfg); err != nil {
			fmt.Fprintln(os.Stderr, "child: continuous:", err)
			return 1
		}
		return 0
	}
	if _, err := verify.Run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child: run:", err)
		return 1
	}
	return 0
}

// childConfig is the crash tests' verification: small batches and short leases, so that a
// kill lands in every kind of moment and a restart takes the dead one's tasks over soon.
func (f *fixture) childConfig(owner string) verify.Config {
	cfg := f.config()
	cfg.Partitions, cfg.Batch, cfg.Concurrency = 6, 20, 2
	cfg.Lease, cfg.Poll, cfg.Retries = testLease, 50*time.Millisecond, 50
	cfg.CheckpointEvery = 50 * time.Millisecond
	cfg.Owner = owner
	// A rate limit spreads the full pass over enough time for a dozen kills whatever the
	// machine's speed (the race detector's included).
	cfg.Rate = 200
	if raceEnabled {
		cfg.Rate = 80
	}
	return cfg
}

// untilOrphaned is a context that ends when this process's parent is gone.
func untilOrphaned() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	parent := os.Getppid()
	go func() {
		for os.Getppid() == parent {
			time.Sleep(500 * time.Millisecond)
		}
		cancel()
	}()
	return ctx
}

// child starts a verifier process on f's database; name labels it, env is added to its
// environment.
func (f *fixture) child(name string, env ...string) (*exec.Cmd, *strings.Builder, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TANDEM_VERIFY_CHILD="+name, "TANDEM_VERIFY_URI="+serverURI, "TANDEM_VERIFY_DB="+f.db)
	cmd.Env = append(cmd.Env, env...)
	var out strings.Builder
	cmd.Stderr, cmd.Stdout = &out, &out
	return cmd, &out, cmd.Start()
}

// waitExit waits up to d for cmd to exit.
func waitExit(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("did not exit within %s", d)
	}
}
