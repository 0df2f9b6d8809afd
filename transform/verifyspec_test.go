package transform

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVerifySectionReadsTheMismatchBudget(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       int64
	}{
		{"absent", body(okStep), 0},
		{"zero", body("verify: {mismatch_budget: 0}\n" + okStep), 0},
		{"a number", body("verify: {mismatch_budget: 25}\n" + okStep), 25},
		{"with underscores", body("verify:\n  mismatch_budget: 1_000\n" + okStep), 1000},
		{"empty section", body("verify: {}\n" + okStep), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("spec.yaml", []byte(tc.yaml))
			require.NoError(t, err)
			assert.Equal(t, tc.want, s.Verify.MismatchBudget)
		})
	}
}

func TestVerifySectionRejectsABadBudget(t *testing.T) {
	for _, tc := range []struct {
		name, value, msg string
	}{
		{"text", "lots", `"lots" is not a number`},
		{"quoted number", `"5"`, `"5" is not a number`},
		{"fraction", "2.5", `"2.5" is not a number`},
		{"negative", "-1", "-1 is negative"},
		{"a list", "[1]", "is not a number"},
		{"too big", "99999999999999999999", "want a whole number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("spec.yaml", []byte(body("verify: {mismatch_budget: "+tc.value+"}\n"+okStep)))
			require.Error(t, err)
			var errs SpecErrors
			require.ErrorAs(t, err, &errs)
			require.Len(t, errs, 1, "%v", err)
			assert.ErrorIs(t, err, ErrInvalidValue)
			assert.Equal(t, "verify.mismatch_budget", errs[0].Path)
			assert.Equal(t, 4, errs[0].Line, "the line of the budget")
			assert.Contains(t, errs[0].Msg, tc.msg)
		})
	}
	_, err := Parse("spec.yaml", []byte(body("verify: {budget: 3}\n"+okStep)))
	require.ErrorIs(t, err, ErrUnknownKey, "an unknown verify field is named")
	assert.Contains(t, err.Error(), "verify.budget")
}
