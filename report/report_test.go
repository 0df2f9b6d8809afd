package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/report"
)

// schema compiles the report's JSON schema, checking formats (date-time) too.
func schema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(report.Schema))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	require.NoError(t, c.AddResource(report.SchemaID, doc))
	s, err := c.Compile(report.SchemaID)
	require.NoError(t, err)
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, text string) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	require.NoError(t, err)
	return s.Validate(inst)
}

// TestReportOfARealVerification runs today's verifier over stores with one corruption of each
// kind it finds, and checks what the report says about them, in every format.
func TestReportOfARealVerification(t *testing.T) {
	f := newFixture(t, -1)
	f.seed(t, 10)
	f.corrupt(t)
	sum := f.verify(t)
	require.Equal(t, int64(4), sum.Mismatches, "the verifier finds the four corruptions")

	r, err := f.svc.Generate(context.Background(), migration)
	require.NoError(t, err)
	v := r.Verification
	assert.True(t, v.Found)
	assert.True(t, v.Complete)
	assert.Equal(t, int64(11), v.Compared, "10 old documents and the extra key")
	for kind, want := range map[string]int64{report.KindMissing: 1, report.KindExtra: 1, report.KindDiffering: 2, report.KindUntransformable: 0} {
		n, checked := v.Counts.ByKind(kind)
		assert.True(t, checked, kind)
		assert.Equal(t, want, n, kind)
	}
	for _, kind := range []string{report.KindInvariantBroken, report.KindIndexMissing} {
		n, checked := v.Counts.ByKind(kind)
		assert.True(t, checked, "%s is checked by every verification run", kind)
		assert.Zero(t, n, kind)
	}
	assert.Contains(t, v.Origin, report.OriginVerifyRun, "filled from the run's records, not a summary")
	require.NotNil(t, v.Total, "a run records the old store's size")
	assert.Positive(t, *v.Total)
	require.NotNil(t, r.Coverage.Ratio)
	assert.Equal(t, int64(11), r.Coverage.Compared)
	assert.Equal(t, report.Fail, r.Verdict.Result, "4 mismatches, budget 0")
	assert.Contains(t, r.Verdict.Reasons[0], "4 confirmed mismatches exceed the budget of 0")
	assert.Equal(t, f.spec.Version, r.Spec.Version)
	assert.Equal(t, "users-v2", r.Spec.Name)
	require.NotNil(t, r.AsOf.Time)
	require.NotEmpty(t, v.Drift)
	assert.Equal(t, int64(4), v.Drift[len(v.Drift)-1].Confirmed, "the run's last drift point holds its confirmed mismatches")

	byKey := map[string]report.Mismatch{}
	for _, m := range v.Top {
		byKey[m.Key] = m
	}
	require.Len(t, byKey, 4)
	assert.Equal(t, report.KindMissing, byKey[`"user-000003"`].Kind)
	assert.Equal(t, report.KindExtra, byKey[`"user-000100"`].Kind)
	age := byKey[`"user-000005"`]
	require.Len(t, age.Fields, 1)
	assert.Equal(t, report.FieldDiff{Path: "age", Change: report.ChangeDiffers, Want: age.Fields[0].Want, Got: age.Fields[0].Got}, age.Fields[0])
	assert.Equal(t, "long", age.Fields[0].Want.Type, "BSON type names")
	assert.Equal(t, "string", age.Fields[0].Got.Type)
	pw := byKey[`"user-000007"`]
	require.Len(t, pw.Fields, 1)
	assert.Equal(t, "password", pw.Fields[0].Path)
	assert.Equal(t, "string", pw.Fields[0].Want.Type)
	assert.NotEqual(t, pw.Fields[0].Want.Hash, pw.Fields[0].Got.Hash, "different values hash differently")
	assert.Equal(t, `"`+plantedSecret+`"`, *pw.Fields[0].Want.Value, "the stored report keeps the value")

	s := schema(t)
	for _, withValues := range []bool{false, true} {
		js := render(t, r, report.FormatJSON, withValues)
		require.NoError(t, validate(t, s, js), "the JSON validates against its schema (values: %t)", withValues)
		md := render(t, r, report.FormatMarkdown, withValues)
		page := render(t, r, report.FormatHTML, withValues)
		for _, section := range report.Sections {
			assert.Contains(t, md, "## "+section+"\n", "markdown section %s", section)
			assert.Contains(t, page, "<h2>"+section+"</h2>", "html section %s", section)
		}
		for name, text := range map[string]string{"json": js, "md": md, "html": page} {
			if withValues {
				assert.Contains(t, text, plantedSecret, "%s with values shows the value", name)
			} else {
				assert.NotContains(t, text, plantedSecret, "%s without values never shows the planted secret", name)
				assert.NotContains(t, text, "Pl4nted", name)
				assert.Contains(t, text, pw.Fields[0].Want.Hash, "%s shows the value's hash", name)
			}
		}
	}
}

func TestSchemaRefusesWhatItShould(t *testing.T) {
	f := newFixture(t, -1)
	f.seed(t, 8)
	f.corrupt(t)
	f.verify(t)
	r, err := f.svc.Generate(context.Background(), migration)
	require.NoError(t, err)
	s := schema(t)

	leaky := r.WithoutValues()
	leaky.Verification.Top[0].Fields[0].Want = &report.Value{Type: "string", Hash: "sha256:0123456789abcdef", Value: new(string)}
	for _, m := range leaky.Verification.Top {
		if m.Kind == report.KindDiffering {
			m.Fields[0].Want.Value = new(string)
		}
	}
	var b bytes.Buffer
	require.NoError(t, report.Render(&b, leaky, report.FormatJSON))
	assert.Error(t, validate(t, s, b.String()), "a value in a report that says it has none is refused")

	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(render(t, r, report.FormatJSON, false)), &doc))
	doc["verdict"].(map[string]any)["result"] = "MAYBE"
	bad, _ := json.Marshal(doc)
	assert.Error(t, validate(t, s, string(bad)), "a verdict other than PASS or FAIL is refused")
	delete(doc, "verdict")
	bad, _ = json.Marshal(doc)
	assert.Error(t, validate(t, s, string(bad)), "a report without a verdict is refused")
}

func TestVerdictAgainstTheBudget(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	found := report.Verification{Found: true, Complete: true, Compared: 10,
		Counts: report.Counts{Missing: n(1), Extra: n(0), Differing: n(2), Untransformable: n(0)}}
	cases := []struct {
		name   string
		v      report.Verification
		budget int64
		want   string
		why    string
	}{
		{"no verification", report.Verification{}, 5, report.Fail, "no verification recorded"},
		{"over budget", found, 2, report.Fail, "3 confirmed mismatches exceed the budget of 2 (missing 1, differing 2)"},
		{"at budget", found, 3, report.Pass, "3 confirmed mismatches within the budget of 3"},
		{"incomplete", func() report.Verification { v := found; v.Complete = false; return v }(), 10, report.Fail, "did not go through every key"},
		{"blocking gap", func() report.Verification {
			v := found
			v.NotCovered = []report.Gap{{What: "2 documents without a readable key", Why: "they could not be compared", Blocking: true}}
			return v
		}(), 10, report.Fail, "not covered: 2 documents without a readable key"},
		{"a gap that does not block", func() report.Verification {
			v := found
			v.NotCovered = []report.Gap{{What: "invariants", Why: "not checked"}}
			return v
		}(), 3, report.Pass, "within the budget"},
		{"unchecked kinds count nothing", report.Verification{Found: true, Complete: true}, 0, report.Pass, "0 confirmed mismatches"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := report.Judge(tc.v, tc.budget)
			assert.Equal(t, tc.want, got.Result)
			assert.Contains(t, strings.Join(got.Reasons, "; "), tc.why)
		})
	}
}

func TestTheSpecsBudgetDecides(t *testing.T) {
	for budget, want := range map[int]string{3: report.Fail, 4: report.Pass} {
		f := newFixture(t, budget)
		f.seed(t, 8)
		f.corrupt(t)
		f.verify(t)
		r, err := f.svc.Generate(context.Background(), migration)
		require.NoError(t, err)
		assert.Equal(t, want, r.Verdict.Result, "4 mismatches, budget %d", budget)
		assert.Equal(t, int64(budget), r.Spec.MismatchBudget)
	}
	f := newFixture(t, -1)
	r, err := f.svc.Generate(context.Background(), migration)
	require.NoError(t, err)
	assert.Equal(t, report.Fail, r.Verdict.Result)
	assert.Contains(t, r.Verdict.Reasons[0], "no verification recorded")
	assert.False(t, r.Verification.Found)
}

func TestACleanVerificationPasses(t *testing.T) {
	f := newFixture(t, -1)
	f.seed(t, 8)
	f.verify(t)
	r, err := f.svc.Generate(context.Background(), migration)
	require.NoError(t, err)
	assert.Equal(t, report.Pass, r.Verdict.Result, "%v", r.Verdict.Reasons)
	assert.Empty(t, r.Verification.Top)
	for _, g := range r.Gates {
		if g.Gate == "verification" {
			assert.True(t, g.OK, "the cutover gate agrees: %s", g.Detail)
		}
	}
}

func TestAStoredReportRendersTheSameByID(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	f.seed(t, 8)
	f.corrupt(t)
	f.verify(t)
	first, err := f.svc.Generate(ctx, migration)
	require.NoError(t, err)

	// The stores are repaired and verified again: a new report would pass, the stored one
	// must still say what it said.
	f.seed(t, 8)
	f.verify(t)
	loaded, err := f.svc.Load(ctx, migration, first.ID)
	require.NoError(t, err)
	for _, format := range report.Formats {
		for _, withValues := range []bool{false, true} {
			assert.Equal(t, render(t, first, format, withValues), render(t, loaded, format, withValues), "%s, values %t", format, withValues)
		}
	}
	latest, err := f.svc.Generate(ctx, migration)
	require.NoError(t, err)
	assert.NotEqual(t, first.ID, latest.ID)
	require.NotEmpty(t, latest.Verification.Drift, "the newest run's drift")
	assert.Equal(t, int64(1), latest.Verification.Drift[len(latest.Verification.Drift)-1].Confirmed, "the seed repaired all but the extra key")
	assert.NotEqual(t, first.Verification.Origin, latest.Verification.Origin, "another run")
	byLatest, err := f.svc.Load(ctx, migration, catalog.LatestReport)
	require.NoError(t, err)
	assert.Equal(t, latest.ID, byLatest.ID)
}

func TestSignOffIsAuditedAndShown(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	f.seed(t, 8)
	f.verify(t)
	r, err := f.svc.Generate(ctx, migration)
	require.NoError(t, err)
	assert.Contains(t, render(t, r, report.FormatMarkdown, false), "Not signed off.")

	signed, err := f.svc.Sign(ctx, migration, r.ID, "Grace Hopper", "verified <b>clean</b>, go", "api:grace")
	require.NoError(t, err)
	require.Len(t, signed.SignOffs, 1)
	so := signed.SignOffs[0]
	assert.Equal(t, "Grace Hopper", so.By)
	assert.Equal(t, "verified <b>clean</b>, go", so.Comment)
	assert.Equal(t, report.Pass, so.Verdict)
	assert.Equal(t, "api:grace", so.RecordedBy)

	audit, err := f.cat.Audit(ctx, migration, 0)
	require.NoError(t, err)
	last := audit[len(audit)-1]
	assert.Equal(t, catalog.KindSignOff, last.Kind, "the sign-off is an audit entry")
	assert.Equal(t, r.ID, last.Subject)

	again, err := f.svc.Load(ctx, migration, r.ID)
	require.NoError(t, err)
	require.Len(t, again.SignOffs, 1, "later renderings show the sign-off")
	md := render(t, again, report.FormatMarkdown, false)
	assert.Contains(t, md, "Grace Hopper")
	assert.NotContains(t, md, "Not signed off.")
	page := render(t, again, report.FormatHTML, false)
	assert.Contains(t, page, "verified &lt;b&gt;clean&lt;/b&gt;, go", "the comment is escaped")
	assert.NotContains(t, page, "<b>clean</b>")
	for _, e := range again.History {
		assert.NotEqual(t, catalog.KindSignOff, e.Kind, "the history does not repeat the sign-off")
	}

	other, err := f.svc.Generate(ctx, migration)
	require.NoError(t, err)
	assert.Empty(t, other.SignOffs, "a sign-off belongs to one report")

	_, err = f.svc.Sign(ctx, migration, r.ID, " ", "x", "api:x")
	assert.ErrorIs(t, err, report.ErrNoSigner)
	_, err = f.svc.Sign(ctx, migration, r.ID, "x", "", "api:x")
	assert.ErrorIs(t, err, report.ErrNoComment)
}

func TestUnknownMigrationsAndReports(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	_, err := f.svc.Generate(ctx, "nope")
	assert.ErrorIs(t, err, report.ErrUnknownMigration)
	assert.ErrorIs(t, err, catalog.ErrNotFound)
	_, err = f.svc.Load(ctx, "nope", catalog.LatestReport)
	assert.ErrorIs(t, err, report.ErrUnknownMigration)
	_, err = f.svc.Load(ctx, migration, catalog.LatestReport)
	assert.ErrorIs(t, err, report.ErrUnknownReport, "no report stored yet")
	for _, id := range []string{"0123456789abcdef01234567", "not-an-id", ""} {
		_, err = f.svc.Load(ctx, migration, id)
		assert.ErrorIs(t, err, report.ErrUnknownReport, id)
		assert.ErrorIs(t, err, catalog.ErrNotFound, id)
	}
	r, err := f.svc.Generate(ctx, migration)
	require.NoError(t, err)
	_, err = f.svc.Sign(ctx, migration, "0123456789abcdef01234567", "a", "b", "c")
	assert.ErrorIs(t, err, report.ErrUnknownReport)

	// Another migration's report id is unknown to this one.
	_, err = f.cat.RegisterSpec(ctx, "other", "v1", "name: other", "test")
	require.NoError(t, err)
	_, err = f.svc.Load(ctx, "other", r.ID)
	assert.ErrorIs(t, err, report.ErrUnknownReport)
	var buf bytes.Buffer
	assert.ErrorIs(t, report.Render(&buf, r, "pdf"), report.ErrUnknownFormat)
}

var externalRef = regexp.MustCompile(`(?i)(src|href|action|xlink:href)\s*=\s*["']?\s*(https?:)?//|@import|url\(|<link\b|<iframe\b|<img\b`)

func TestHTMLIsSelfContainedAndEscaped(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	f.seed(t, 8)
	f.corrupt(t)
	// A hostile reason in the history and a hostile value in a document.
	require.NoError(t, f.cat.RecordAudit(ctx, catalog.AuditEntry{Migration: migration, Kind: "phase", From: "off", To: "shadow",
		Who: "mallory", Why: `</script><script src="https://evil.example/x.js"></script><img src=x onerror=alert(1)>`}))
	require.NoError(t, f.old.Upsert(ctx, append(user(6), bsonE("note", `<script>alert("v")</script>`))))
	f.verify(t)
	r, err := f.svc.Generate(ctx, migration)
	require.NoError(t, err)
	for _, withValues := range []bool{false, true} {
		page := render(t, r, report.FormatHTML, withValues)
		assert.NotRegexp(t, externalRef, page, "no external reference (values %t)", withValues)
		assert.NotContains(t, page, "<img")
		assert.NotContains(t, page, `<script>alert`)
		assert.Equal(t, 2, strings.Count(page, "<script"), "only the page's own two inline scripts")
		assert.Contains(t, page, "<svg", "the drift chart is inline SVG")
		assert.Contains(t, page, "&lt;/script&gt;&lt;script src=", "the hostile reason is shown, escaped")
	}
	md := render(t, r, report.FormatMarkdown, true)
	assert.NotContains(t, md, "<script", "markdown escapes HTML too")
}

func TestAReportNeedsTheCurrentSpecVersion(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	_, err := f.cat.RegisterSpec(ctx, migration, "0000aaaa0000aaaa", "name: users-v2 # edited elsewhere", "another proxy")
	require.NoError(t, err)
	_, err = f.svc.Generate(ctx, migration)
	require.ErrorIs(t, err, report.ErrSpecVersion)
	assert.Contains(t, err.Error(), "runs spec version "+f.spec.Version)
	assert.Contains(t, err.Error(), "current version is 0000aaaa0000aaaa")
}
