package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMotoServesDynamoDBAndStops(t *testing.T) {
	m := StartMotoT(t)
	assert.Regexp(t, `^http://127\.0\.0\.1:\d+$`, m.Endpoint())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := m.DynamoDB()
	name := UniqueName("testenv")
	require.NoError(t, CreateTable(ctx, c, Table{Name: name, Key: "pk", Sort: "sk", SortType: types.ScalarAttributeTypeN}))
	_, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(name), Item: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "a"},
		"sk": &types.AttributeValueMemberN{Value: "1"},
		"v":  &types.AttributeValueMemberS{Value: "x"},
	}})
	require.NoError(t, err)
	out, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(name), Key: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "a"},
		"sk": &types.AttributeValueMemberN{Value: "1"},
	}})
	require.NoError(t, err)
	assert.Equal(t, &types.AttributeValueMemberS{Value: "x"}, out.Item["v"])

	pid := m.PID()
	m.Stop()
	m.Stop() // a second Stop is harmless
	// The process is gone (reaped): signal 0 fails.
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestMotoMissing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("no interpreter", func(t *testing.T) {
		t.Setenv("TANDEM_PYTHON", filepath.Join(t.TempDir(), "no-python"))
		_, err := StartMoto(ctx)
		assert.ErrorIs(t, err, ErrMotoMissing)
	})
	t.Run("interpreter without moto", func(t *testing.T) {
		// A fake interpreter that fails the way python does without the package.
		fake := filepath.Join(t.TempDir(), "python")
		script := "#!/bin/sh\necho \"/usr/bin/python3: Error while finding module specification for 'moto.server' (ModuleNotFoundError: No module named 'moto')\" >&2\nexit 1\n"
		require.NoError(t, os.WriteFile(fake, []byte(script), 0o755))
		t.Setenv("TANDEM_PYTHON", fake)
		_, err := StartMoto(ctx)
		assert.ErrorIs(t, err, ErrMotoMissing)
	})
	t.Run("default is .venv above go.mod", func(t *testing.T) {
		t.Setenv("TANDEM_PYTHON", "")
		p, err := Python()
		require.NoError(t, err)
		root, rel := filepath.Dir(filepath.Dir(filepath.Dir(p))), filepath.Join(".venv", "bin", "python")
		assert.Equal(t, filepath.Join(root, rel), p)
		_, err = os.Stat(filepath.Join(root, "go.mod"))
		assert.NoError(t, err, "the folder above .venv holds go.mod")
	})
}

func TestMotoExitsEarly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fake := filepath.Join(t.TempDir(), "python")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\necho boom >&2\nexit 3\n"), 0o755))
	t.Setenv("TANDEM_PYTHON", fake)
	_, err := StartMoto(ctx)
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrMotoMissing), "a crash is not a missing install: %v", err)
	assert.Contains(t, err.Error(), "boom")
}

// recordingTB records how a helper ended the test instead of ending it.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper()                           {}
func (r *recordingTB) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *recordingTB) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestSkipOrFail(t *testing.T) {
	missing := fmt.Errorf("python x: %w", ErrMotoMissing)
	tests := []struct {
		name                  string
		requireMoto, requireC string
		err                   error
		skip, fail            bool
	}{
		{"started", "", "", nil, false, false},
		{"missing", "", "", missing, true, false},
		{"missing, TANDEM_REQUIRE_MOTO", "1", "", missing, false, true},
		{"missing, TANDEM_REQUIRE_CLIENTS", "", "1", missing, false, true},
		{"crashed", "", "", errors.New("moto exited while starting"), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TANDEM_REQUIRE_MOTO", tc.requireMoto)
			t.Setenv("TANDEM_REQUIRE_CLIENTS", tc.requireC)
			r := &recordingTB{TB: t}
			SkipOrFail(r, tc.err)
			assert.Equal(t, tc.skip, r.skipped != "", "skipped: %q", r.skipped)
			assert.Equal(t, tc.fail, r.failed != "", "failed: %q", r.failed)
			if tc.err != nil && errors.Is(tc.err, ErrMotoMissing) {
				assert.Contains(t, r.skipped+r.failed, "make clients")
			}
		})
	}
}
