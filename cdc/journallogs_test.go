package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/testenv"
)

// secret is a value of the filters of these tests: user data that must not appear in any
// record at info level or above.
const secret = "ssn-123-45-6789"

// TestJournalWorkerLogsNoFilterAboveDebug drives the worker with an unkeyed entry whose filter
// holds a secret, where the entry is skipped (no FilterKeys; FilterKeys says unresolvable) or
// its batch retried (FilterKeys fails once), and checks, with one recorder at info and one at
// debug: at info level no record shows the filter, the warning names it by ns, op and
// adapters.FilterHash; the filter shows only in debug records. It runs on kfake only: what is
// logged does not depend on the broker.
func TestJournalWorkerLogsNoFilterAboveDebug(t *testing.T) {
	filter, err := bson.Marshal(bson.D{{Key: "ssn", Value: secret}, {Key: "status", Value: "vip"}})
	require.NoError(t, err)
	hash := adapters.FilterHash(filter)

	unresolvable := func(context.Context, string, string, bson.Raw) ([]adapters.Key, error) {
		return nil, fmt.Errorf("an operator this test does not support: %w", cdc.ErrUnresolvable)
	}
	var calls atomic.Int64
	failsOnce := func(context.Context, string, string, bson.Raw) ([]adapters.Key, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("old store unreachable (test)")
		}
		return nil, nil
	}
	for _, tc := range []struct {
		name       string
		filterKeys cdc.FilterKeysFunc
		warning    string // the message of the warning that names the filter
		byAttrs    bool   // whether the warning is the worker's own, with ns, op and filter_hash attributes
	}{
		{"no FilterKeys", nil, "unkeyed journal entry skipped: no FilterKeys configured", true},
		{"unresolvable", unresolvable, "unkeyed journal entry skipped", true},
		// The journal logs the worker's error, which names the entry in its text.
		{"retried", failsOnce, "journal batch failed; retrying", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, debug := testenv.NewLogRecorder(slog.LevelInfo), testenv.NewLogRecorder(slog.LevelDebug)
			f := newLoggedFixture(t, journalKafkas[0].seeds(t), nil, slog.New(slog.NewMultiHandler(info, debug)))
			f.run(t, cdc.JournalWorkerConfig{FilterKeys: tc.filterKeys})
			require.NoError(t, f.journal.Append(context.Background(), adapters.JournalEntry{
				Migration: "users-test", Namespace: "d.users", Op: "update", Filter: filter, Reason: "unkeyed_write", At: time.Now(),
			}))
			eventually(t, "the warning", func() bool { _, ok := info.Find(tc.warning); return ok })
			eventually(t, "every record committed", func() bool {
				n, err := f.journal.Lag(context.Background(), cdc.DefaultJournalGroup)
				require.NoError(t, err)
				return n == 0
			})

			for _, rec := range info.Records() {
				assert.NotContains(t, testenv.LogText(rec), secret, "an info-level record shows the filter")
			}
			warning, _ := info.Find(tc.warning)
			assert.Equal(t, slog.LevelWarn, warning.Level)
			text := testenv.LogText(warning)
			if tc.byAttrs {
				for key, want := range map[string]string{"ns": "d.users", "op": "update", "filter_hash": hash, "migration": "users-test"} {
					v, ok := testenv.LogAttr(warning, key)
					if assert.True(t, ok, "the warning has %s: %s", key, text) {
						assert.Equal(t, want, v.String(), key)
					}
				}
			} else {
				assert.Contains(t, text, "d.users", "the warning names the namespace")
				assert.Contains(t, text, "update", "the warning names the op")
				assert.Contains(t, text, "filter_hash "+hash, "the warning names the filter by its hash")
			}

			var shown []slog.Record
			for _, rec := range debug.Records() {
				if strings.Contains(testenv.LogText(rec), secret) {
					shown = append(shown, rec)
					assert.Equal(t, slog.LevelDebug, rec.Level, "the filter is shown at debug only: %s", testenv.LogText(rec))
				}
			}
			require.NotEmpty(t, shown, "a debug record shows the filter")
			v, _ := testenv.LogAttr(shown[0], "filter_hash")
			assert.Equal(t, hash, v.String(), "the debug record has the warning's hash")
			v, _ = testenv.LogAttr(shown[0], "filter")
			assert.Equal(t, bson.Raw(filter).String(), v.String())
		})
	}
}
