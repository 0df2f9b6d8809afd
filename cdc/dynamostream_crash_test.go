package cdc_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/testenv"
)

// The environment of a DynamoStream child process (TestDynamoStreamChild).
const (
	dynChildEnv      = "TANDEM_DYNSTREAM_CHILD" // the run's number; set only in a child
	dynChildEndpoint = "TANDEM_DYNSTREAM_ENDPOINT"
	dynChildTable    = "TANDEM_DYNSTREAM_TABLE"
	dynChildDir      = "TANDEM_DYNSTREAM_DIR"   // holds pos (the saved position) and log
	dynChildFinal    = "TANDEM_DYNSTREAM_FINAL" // "1": exit 0 at the first CaughtUp batch
)

// TestDynamoStreamSurvivesKills runs a DynamoStream in a child process that feeds a minimal
// applier: per batch it appends the batch's changes to a log file ("K run op key"), then saves
// the batch's position (a rename), then appends "P run". While a writer inserts, updates and
// deletes items on moto, the child is SIGKILLed at random moments ten times and restarted from
// the saved position; a last run stops once caught up. Then: every write's change is in the log
// (nothing lost), no change is delivered twice within one run, and no change of a batch whose
// position was saved is delivered again (a re-delivery happens only for the batch a kill
// interrupted: at least once across a crash, exactly once otherwise).
func TestDynamoStreamSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	m := testenv.StartMotoT(t)
	table := testenv.UniqueName("dynkill")
	store, raw := dynMotoTable(t, m.Endpoint(), table, "S")
	dir := t.TempDir()
	pos, err := dynSource(t, dynMotoStreams(m.Endpoint()), store, nil).Start(context.Background())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pos"), pos, 0o600))

	// The writer: key w_i inserted; every 4th step updates w_{i-2}, every 6th deletes w_{i-3}
	// (disjoint keys), so each (key, op) pair happens once.
	stop := make(chan struct{})
	var (
		wg   sync.WaitGroup
		want []string
	)
	wg.Go(func() {
		for i := 0; i < 600; i++ {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			k := fmt.Sprintf("w%04d", i)
			if !dynPut(t, raw, table, map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: k}, "v": &ddbtypes.AttributeValueMemberN{Value: "1"}}) {
				return
			}
			want = append(want, "insert "+k)
			if i >= 2 && i%4 == 0 {
				u := fmt.Sprintf("w%04d", i-2)
				if !dynPut(t, raw, table, map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: u}, "v": &ddbtypes.AttributeValueMemberN{Value: "2"}}) {
					return
				}
				want = append(want, "update "+u)
			}
			if i >= 3 && i%6 == 0 {
				d := fmt.Sprintf("w%04d", i-3)
				if !dynDel(t, raw, table, map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: d}}) {
					return
				}
				want = append(want, "delete "+d)
			}
		}
	})
	stopWriter := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWriter)

	child := func(run int, final bool) (*exec.Cmd, *strings.Builder) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDynamoStreamChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), dynChildEnv+"="+strconv.Itoa(run), dynChildEndpoint+"="+m.Endpoint(),
			dynChildTable+"="+table, dynChildDir+"="+dir, dynChildFinal+"="+map[bool]string{true: "1"}[final])
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		return cmd, &out
	}
	kills := 0
	for run := 1; kills < 10; run++ {
		cmd, out := child(run, false)
		// Kill it once it has delivered a change (it runs), a random moment later: inside a
		// batch, between its log and its position, or while it waits for records.
		for deadline := time.Now().Add(time.Minute); deliveredBy(t, dir, run) == 0 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(100+rand.IntN(700)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		require.Error(t, waitChild(cmd, 10*time.Second), "killed")
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL,
			"run %d ended by itself (%s), not by the kill:\n%s", run, cmd.ProcessState, out.String())
		kills++
		t.Logf("kill %d: run %d delivered %d changes, saved %d positions", kills, run, deliveredBy(t, dir, run), savedBy(t, dir, run))
	}
	stopWriter()
	cmd, out := child(100, true)
	require.NoError(t, waitChild(cmd, 2*time.Minute), "last run:\n%s", out.String())

	delivered, again, violations := checkDynLog(t, filepath.Join(dir, "log"))
	assert.Empty(t, violations, "deliveries that break at-least-once or repeat a saved batch")
	var missing []string
	for _, w := range want {
		if !delivered[w] {
			missing = append(missing, w)
		}
	}
	assert.Empty(t, missing, "changes never delivered")
	assert.Len(t, delivered, len(want), "no change that was not written")
	assert.GreaterOrEqual(t, kills, 10)
	t.Logf("%d changes written, %d kills, %d delivered again after a kill", len(want), kills, again)
}

// deliveredBy counts the changes run has logged ("K run" lines).
func deliveredBy(t testing.TB, dir string, run int) int {
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if os.IsNotExist(err) {
		return 0
	}
	require.NoError(t, err)
	return strings.Count(string(b), "K "+strconv.Itoa(run)+" ")
}

// savedBy counts the positions run has saved ("P run" lines).
func savedBy(t testing.TB, dir string, run int) int {
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if os.IsNotExist(err) {
		return 0
	}
	require.NoError(t, err)
	return strings.Count(string(b), "P "+strconv.Itoa(run)+"\n")
}

// checkDynLog replays the child log: a change delivered after its batch's position was saved
// ("P") must never come again; within one run a change comes once. It returns every change
// delivered, how many deliveries repeated an unsaved batch after a kill, and the violations.
func checkDynLog(t testing.TB, path string) (delivered map[string]bool, again int, violations []string) {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	delivered = map[string]bool{}
	saved := map[string]bool{} // changes of batches whose position was saved
	var batch []string         // the current batch's changes (since the last P)
	inRun := map[string]bool{} // changes delivered in the current run
	run := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 4 && fields[0] == "K":
			if fields[1] != run { // a new run: the last one's unsaved batch is forgotten
				run, batch, inRun = fields[1], nil, map[string]bool{}
			}
			c := fields[2] + " " + fields[3]
			if saved[c] {
				violations = append(violations, fmt.Sprintf("run %s: %s again after its position was saved", run, c))
			}
			if inRun[c] {
				violations = append(violations, fmt.Sprintf("run %s: %s twice", run, c))
			}
			if delivered[c] && !saved[c] && !inRun[c] {
				again++
			}
			inRun[c], delivered[c] = true, true
			batch = append(batch, c)
		case len(fields) == 2 && fields[0] == "P":
			if fields[1] == run {
				for _, c := range batch {
					saved[c] = true
				}
			}
			batch = nil
		default:
			violations = append(violations, "a torn log line: "+sc.Text())
		}
	}
	require.NoError(t, sc.Err())
	return delivered, again, violations
}

func waitChild(cmd *exec.Cmd, d time.Duration) error {
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

// TestDynamoStreamChild is the child process of TestDynamoStreamSurvivesKills; run by itself
// it skips.
func TestDynamoStreamChild(t *testing.T) {
	run := os.Getenv(dynChildEnv)
	if run == "" {
		t.Skip("the child of TestDynamoStreamSurvivesKills")
	}
	if err := dynChild(run); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// dynChild tails the stream from the saved position, logging each batch and saving its
// position after it, until killed or (final) caught up.
func dynChild(run string) error {
	ctx := context.Background()
	endpoint, dir := os.Getenv(dynChildEndpoint), os.Getenv(dynChildDir)
	raw := dynamodb.New(dynamodb.Options{BaseEndpoint: aws.String(endpoint), Region: testenv.MotoRegion,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.MotoAccessKey, testenv.MotoSecretKey, "")})
	store, err := adapters.NewDynamoStore(ctx, os.Getenv(dynChildTable), "pk", adapters.DynamoClient(raw))
	if err != nil {
		return err
	}
	src, err := cdc.NewDynamoStream(cdc.DynamoStreamConfig{Streams: dynMotoStreams(endpoint), Table: store, Limit: 17,
		MinPoll: 5 * time.Millisecond, MaxIdle: 50 * time.Millisecond, IdleCheckpoint: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	pos, err := os.ReadFile(filepath.Join(dir, "pos"))
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make(chan cdc.Batch, 2)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, pos, out) }()
	final := os.Getenv(dynChildFinal) == "1"
	for {
		select {
		case err := <-done:
			return fmt.Errorf("run: %w", err)
		case b := <-out:
			// One write per batch: a kill never tears a line.
			var buf strings.Builder
			for _, c := range b.Changes {
				fmt.Fprintf(&buf, "K %s %s %v\n", run, c.Op, c.Key)
			}
			if _, err := logf.WriteString(buf.String()); err != nil {
				return err
			}
			// An applier takes a while to converge a batch before it saves the position: a
			// kill in this window must lead to the batch being delivered again.
			if len(b.Changes) > 0 {
				time.Sleep(30 * time.Millisecond)
			}
			tmp := filepath.Join(dir, "pos.tmp")
			if err := os.WriteFile(tmp, b.Position, 0o600); err != nil {
				return err
			}
			if err := os.Rename(tmp, filepath.Join(dir, "pos")); err != nil {
				return err
			}
			if _, err := logf.WriteString("P " + run + "\n"); err != nil {
				return err
			}
			if final && b.CaughtUp {
				return nil
			}
		}
	}
}
