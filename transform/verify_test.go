package transform_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/transform"
)

const verifyBase = `name: users
source:
  mongodb: {uri: "mongodb://h/", database: d, collection: users}
target:
  mongodb: {uri: "mongodb://h/", database: d, collection: users_v2}
forward:
  - compute: {path: email_domain, expr: 'doc.email.split("@")[1]'}
  - move: {from: email, to: profile.email}
`

func TestVerifySection(t *testing.T) {
	s, err := transform.Parse("s.yaml", []byte(verifyBase+`verify:
  settle: 2s
  rate: 1_000
  sample_rate: 2.5
  mismatch_budget: 3
  max_backlog: 50
  invariants:
    - name: email-domain
      expr: 'doc.email_domain == doc.profile.email.split("@")[1]'
  indexes:
    - keys: {email_domain: 1}
  plan: lookup
  spill_dir: /var/tmp/tandem
`))
	require.NoError(t, err)
	v := s.Verify
	assert.Equal(t, "lookup", v.Plan)
	assert.Equal(t, "/var/tmp/tandem", v.SpillDir)
	assert.Equal(t, 2*time.Second, v.Settle)
	assert.Equal(t, 1000.0, v.Rate)
	assert.Equal(t, 2.5, v.SampleRate)
	assert.Equal(t, int64(3), v.MismatchBudget)
	assert.Equal(t, int64(50), v.MaxBacklog)
	require.Len(t, v.Invariants, 1)
	assert.Equal(t, "email-domain", v.Invariants[0].Name)
	assert.Equal(t, 17, v.Invariants[0].Line, "the line of its expr")
	require.Len(t, s.RequiredIndexes(), 1)
	assert.Equal(t, "email_domain", s.RequiredIndexes()[0].Keys[0].Field)

	good, err := s.Forward(bson.D{{Key: "_id", Value: "u1"}, {Key: "email", Value: "a@x.org"}})
	require.NoError(t, err)
	ok, err := v.Invariants[0].Holds(good)
	require.NoError(t, err)
	assert.True(t, ok)
	bad := append(bson.D{}, good...)
	bad[1].Value = "y.org"
	ok, err = v.Invariants[0].Holds(bad)
	require.NoError(t, err)
	assert.False(t, ok)
	_, err = v.Invariants[0].Holds(bson.D{{Key: "_id", Value: "u1"}})
	assert.ErrorIs(t, err, transform.ErrInvariant, "no such field: the invariant cannot be evaluated")

	plain, err := transform.Parse("s.yaml", []byte(verifyBase))
	require.NoError(t, err)
	assert.Equal(t, int64(transform.DefaultMaxBacklog), plain.Verify.MaxBacklog)
	assert.Empty(t, plain.Verify.Invariants)
}

func TestVerifySectionErrors(t *testing.T) {
	for _, tc := range []struct {
		name, section, want string
		sentinel            error
	}{
		{"budget not a number", "  mismatch_budget: lots\n", `s.yaml:10:20: verify.mismatch_budget: must be a whole number (a count of confirmed mismatches) of 0 or more; got "lots"`, transform.ErrInvalidValue},
		{"budget negative", "  mismatch_budget: -1\n", `verify.mismatch_budget: must be a whole number`, transform.ErrInvalidValue},
		{"rate not a number", "  rate: fast\n", `s.yaml:10:9: verify.rate: must be a number`, transform.ErrInvalidValue},
		{"bad settle", "  settle: soon\n", `s.yaml:10:11: verify.settle: must be a duration`, transform.ErrInvalidValue},
		{"unknown field", "  budget: 1\n", `verify.budget: unknown verify field "budget"`, transform.ErrUnknownKey},
		{"invariant does not compile", "  invariants:\n    - name: broken\n      expr: 'doc.email_domain =='\n", `s.yaml:12:13: verify.invariants[0].expr: invariant broken: CEL expression failed: Syntax error`, transform.ErrCEL},
		{"invariant not boolean", "  invariants:\n    - expr: 'size(doc)'\n", `s.yaml:11:13: verify.invariants[0].expr: invariant verify.invariants[0]: gives int, want bool`, transform.ErrCEL},
		{"invariant without expr", "  invariants:\n    - name: x\n", `verify.invariants[0].expr: required`, transform.ErrRequired},
		{"bad index", "  indexes:\n    - keys: {a: 2}\n", `verify.indexes[0].keys.a: must be 1 (ascending) or -1 (descending)`, transform.ErrInvalidValue},
		{"unknown plan", "  plan: hash\n", `s.yaml:10:9: verify.plan: unknown plan "hash" (want one of merge, join, lookup)`, transform.ErrInvalidValue},
		{"spill_dir not a string", "  spill_dir: [a]\n", `verify.spill_dir: must be a string`, transform.ErrInvalidValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := transform.Parse("s.yaml", []byte(verifyBase+"verify:\n"+tc.section))
			require.Error(t, err)
			assert.True(t, errors.Is(err, tc.sentinel), "%v", err)
			assert.True(t, strings.Contains(err.Error(), tc.want), "%v\nwant %s", err, tc.want)
		})
	}
}

func TestVerifyIndexesOfDynamoDBTargetNeedNames(t *testing.T) {
	spec := strings.Replace(verifyBase, `mongodb: {uri: "mongodb://h/", database: d, collection: users_v2}`, `dynamodb: {table: users_v2, region: us-east-1}`, 1) +
		"key: {partition: pk}\nverify:\n  indexes:\n    - keys: {email_domain: 1}\n    - name: by_email\n      keys: {email_domain: 1, age: 1}\n"
	_, err := transform.Parse("s.yaml", []byte(spec))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "verify.indexes[0].name: a DynamoDB global secondary index needs its name")
	assert.NotContains(t, err.Error(), "verify.indexes[1]")

	merge := strings.Replace(verifyBase, `mongodb: {uri: "mongodb://h/", database: d, collection: users_v2}`, `dynamodb: {table: users_v2, region: us-east-1}`, 1) +
		"key: {partition: pk}\nverify:\n  plan: merge\n"
	_, err = transform.Parse("s.yaml", []byte(merge))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "verify.plan: merge reads two MongoDB collections in key order; a DynamoDB table has none: use join or lookup")
}
