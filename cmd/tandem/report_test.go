package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/report"
	"github.com/tandemdb/tandem/transform"
)

// reportSecret is planted in one old document; no report without --include-values shows it.
const reportSecret = "pa55w0rd-Pl4nted-in-a-doc"

// reportFixture is `tandem proxy --spec` over an embedded FerretDB with users-v2 between
// rep.users and rep.users_v2 and a mismatch budget of 1, its admin API in the environment.
type reportFixture struct {
	old, new *mongo.Collection
	spec     *transform.Spec
}

func startReportProxy(t *testing.T) *reportFixture {
	t.Helper()
	ctx := context.Background()
	store, err := embedmongo.Start(ctx, embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	specPath := e2eSpec(t, store.URI(), store.URI(), "rep")
	f, err := os.OpenFile(specPath, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("verify: {mismatch_budget: 1}\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	spec, err := transform.Load(specPath)
	require.NoError(t, err)

	client, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	fx := &reportFixture{old: client.Database("rep").Collection("users"), new: client.Database("rep").Collection("users_v2"), spec: spec}
	for i := range 6 {
		fx.put(t, repUser(userKey(i), i))
	}
	_, adminURL, _, _ := runCommand(t, "proxy", "--upstream", store.URI(), "--spec", specPath,
		"--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--admin-token-file", tokenFile(t), "--flags-poll", "50ms")
	t.Setenv(envAdminURL, adminURL)
	t.Setenv(envAdminToken, e2eToken)
	t.Setenv(envAdminUser, "release-bot")
	return fx
}

func userKey(i int) string { return "u" + string(rune('a'+i)) }

// repUser is a source document of users-v2 (its created a BSON date, as the spec wants).
func repUser(id string, i int) bson.D {
	return bson.D{
		{Key: "_id", Value: id}, {Key: "name", Value: "User " + id},
		{Key: "email", Value: id + "@example.com"}, {Key: "age", Value: int32(20 + i)},
		{Key: "created", Value: bson.NewDateTimeFromTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))},
	}
}

// put writes doc to old and its transform to new.
func (fx *reportFixture) put(t *testing.T, doc bson.D) {
	t.Helper()
	ctx := context.Background()
	_, err := fx.old.ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc[0].Value}}, doc, options.Replace().SetUpsert(true))
	require.NoError(t, err)
	out, err := fx.spec.Forward(doc)
	require.NoError(t, err)
	_, err = fx.new.ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc[0].Value}}, out, options.Replace().SetUpsert(true))
	require.NoError(t, err)
}

var reportIDRE = regexp.MustCompile(`report ([0-9a-f]{24})`)

func reportSchema(t *testing.T) *jsonschema.Schema {
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

// TestReportCommand drives `tandem report` and `tandem report sign` against a running proxy:
// the verdict and exit status follow the budget, values stay out unless asked, a stored
// report renders the same by id, and a sign-off is recorded and shown.
func TestReportCommand(t *testing.T) {
	fx := startReportProxy(t)
	dir := t.TempDir()
	m := "users-v2"

	out, status, _ := tandemCLI(t, "report", m)
	assert.Equal(t, exitFailed, status, "no verification yet: FAIL\n%s", out)
	assert.Contains(t, out, "## Verdict\n\n**FAIL**")
	assert.Contains(t, out, "no verification recorded")

	// One mismatch, with the planted secret: within the budget of 1.
	seven := append(repUser(userKey(2), 2), bson.E{Key: "password", Value: reportSecret})
	fx.put(t, seven)
	_, err := fx.new.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: userKey(2)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "password", Value: "changed-" + reportSecret}}}})
	require.NoError(t, err)
	out, status, _ = tandemCLI(t, "verify", m)
	require.Equal(t, exitFailed, status, "one mismatch: not clean\n%s", out)

	jsonPath := filepath.Join(dir, "r.json")
	out, status, err = tandemCLI(t, "report", m, "--out", jsonPath)
	require.NoError(t, err, out)
	assert.Equal(t, exitOK, status)
	assert.Regexp(t, `users-v2: report [0-9a-f]{24}: PASS, written to .*r.json \(json\)`, out)
	js, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	require.NoError(t, err)
	require.NoError(t, reportSchema(t).Validate(inst), "the JSON validates against its schema")
	assert.NotContains(t, string(js), reportSecret)
	var rep report.Report
	require.NoError(t, json.Unmarshal(js, &rep))
	assert.Equal(t, report.Pass, rep.Verdict.Result)
	assert.Equal(t, int64(1), rep.Spec.MismatchBudget, "the budget comes from the spec")
	assert.Equal(t, fx.spec.Version, rep.Spec.Version)
	require.Len(t, rep.Verification.Top, 1)
	assert.Equal(t, "password", rep.Verification.Top[0].Fields[0].Path)
	assert.Equal(t, int64(6), rep.Coverage.Compared)

	htmlPath := filepath.Join(dir, "r.html")
	out, status, err = tandemCLI(t, "report", m, "--include-values", "--format", "html", "--out", htmlPath)
	require.NoError(t, err, out)
	assert.Equal(t, exitOK, status)
	page, err := os.ReadFile(htmlPath)
	require.NoError(t, err)
	assert.Contains(t, string(page), reportSecret, "--include-values puts the values in")
	for _, s := range report.Sections {
		assert.Contains(t, string(page), "<h2>"+s+"</h2>")
	}

	// With --out, --output json is the summary as one JSON object; the file is in --format.
	out, status, err = tandemCLI(t, "report", m, "--format", "html", "--out", htmlPath, "--output", "json")
	require.NoError(t, err, out)
	assert.Equal(t, exitOK, status)
	var sum reportSummary
	require.NoError(t, json.Unmarshal([]byte(out), &sum), "one JSON document: %s", out)
	assert.Equal(t, reportSummary{Migration: m, ID: sum.ID, Verdict: report.Pass, Reasons: sum.Reasons, Out: htmlPath, Format: report.FormatHTML}, sum)
	assert.Regexp(t, `^[0-9a-f]{24}$`, sum.ID)
	page, err = os.ReadFile(htmlPath)
	require.NoError(t, err)
	assert.Contains(t, string(page), "<h2>", "the file is still HTML")

	// A stored report renders the same by id, also after the stores changed.
	mdPath := filepath.Join(dir, "r.md")
	out, _, err = tandemCLI(t, "report", m, "--out", mdPath)
	require.NoError(t, err, out)
	id := reportIDRE.FindStringSubmatch(out)[1]
	fx.put(t, repUser(userKey(2), 2))
	again, _, err := tandemCLI(t, "report", m, "--id", id)
	require.NoError(t, err, again)
	first, err := os.ReadFile(mdPath)
	require.NoError(t, err)
	assert.Equal(t, string(first), again, "re-rendering by id gives the same report")
	assert.NotContains(t, again, reportSecret)

	// Sign-off.
	out, status, err = tandemCLI(t, "report", "sign", m, "--id", id, "--by", "Ada Lovelace", "--comment", "within budget, go")
	require.NoError(t, err, out)
	assert.Equal(t, exitOK, status)
	assert.Contains(t, out, "users-v2: report "+id+" (PASS) signed off by Ada Lovelace")
	signed, _, err := tandemCLI(t, "report", m, "--id", id)
	require.NoError(t, err)
	assert.Contains(t, signed, "| Ada Lovelace | PASS |")
	assert.Contains(t, signed, "within budget, go")
	assert.Contains(t, signed, "api:release-bot", "who recorded it")
	hist, _, err := tandemCLI(t, "history", m)
	require.NoError(t, err)
	assert.Contains(t, hist, "signoff "+id+" PASS → Ada Lovelace")

	// Over the budget: FAIL, exit 1, the report written all the same.
	_, err = fx.new.DeleteOne(context.Background(), bson.D{{Key: "_id", Value: userKey(4)}})
	require.NoError(t, err)
	_, err = fx.new.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: userKey(1)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "age", Value: "old"}}}})
	require.NoError(t, err)
	_, _, _ = tandemCLI(t, "verify", m)
	failPath := filepath.Join(dir, "fail.md")
	out, status, err = tandemCLI(t, "report", m, "--out", failPath)
	assert.Equal(t, exitFailed, status, out)
	require.Error(t, err)
	assert.Regexp(t, `users-v2: report [0-9a-f]{24}: FAIL: 2 confirmed mismatches exceed the budget of 1 \(missing 1, differing 1\)`, err.Error())
	failed, err := os.ReadFile(failPath)
	require.NoError(t, err)
	assert.Contains(t, string(failed), "**FAIL**")

	out, status, err = tandemCLI(t, "report", m, "--id", "latest", "--format", "json")
	assert.Equal(t, exitFailed, status, "the newest stored report is the failing one")
	require.Error(t, err)
	assert.Contains(t, out, `"result": "FAIL"`)
}

func TestReportCommandRefusesBadInput(t *testing.T) {
	startReportProxy(t)
	dir := t.TempDir()
	m := "users-v2"
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		msg    string
	}{
		{"unknown migration", []string{"report", "nobody"}, exitFailed, "unknown migration nobody: not found in the catalog"},
		{"unknown id", []string{"report", m, "--id", "0123456789abcdef01234567"}, exitFailed, `unknown report id "0123456789abcdef01234567"`},
		{"malformed id", []string{"report", m, "--id", "not-an-id"}, exitFailed, "not a report id"},
		{"none stored yet", []string{"report", m, "--id", "latest"}, exitFailed, "users-v2 has no stored release report yet"},
		{"bad format", []string{"report", m, "--format", "pdf"}, exitUsage, `--format "pdf": want json, md, html`},
		{"unwritable out", []string{"report", m, "--out", filepath.Join(dir, "missing", "r.json")}, exitUsage, "cannot write it: no such file or directory"},
		{"unknown extension", []string{"report", m, "--out", filepath.Join(dir, "r.txt")}, exitUsage, "cannot tell the format from its extension"},
		{"json and format", []string{"report", m, "--output", "json", "--format", "md"}, exitUsage, "contradict"},
		{"older json and format", []string{"report", m, "--json", "--format", "md"}, exitUsage, "contradict"},
		{"no argument", []string{"report"}, exitUsage, "report takes MIGRATION"},
		{"sign without --by", []string{"report", "sign", m, "--comment", "x"}, exitUsage, "needs --by WHO"},
		{"sign without --comment", []string{"report", "sign", m, "--by", "x"}, exitUsage, "needs --comment TEXT"},
		{"sign an unknown report", []string{"report", "sign", m, "--by", "x", "--comment", "y", "--id", "0123456789abcdef01234567"}, exitFailed, "unknown report id"},
		{"sign for an unknown migration", []string{"report", "sign", "nobody", "--by", "x", "--comment", "y"}, exitFailed, "unknown migration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, status, err := tandemCLI(t, tc.args...)
			require.Error(t, err, out)
			assert.Equal(t, tc.status, status, err.Error())
			assert.Contains(t, errorLine(err), tc.msg)
			assert.NotContains(t, errorLine(err), "\n")
		})
	}
	_, err := os.Stat(filepath.Join(dir, "r.txt"))
	assert.ErrorIs(t, err, os.ErrNotExist, "a refused --out leaves no file")
	kept := filepath.Join(dir, "kept.md")
	require.NoError(t, os.WriteFile(kept, []byte("the previous report"), 0o600))
	_, status, _ := tandemCLI(t, "report", "nobody", "--out", kept)
	assert.Equal(t, exitFailed, status)
	b, err := os.ReadFile(kept)
	require.NoError(t, err)
	assert.Equal(t, "the previous report", string(b), "a failed report leaves the file that was there")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file is left behind: %v", entries)

	// Values need the token, so the CLI asks for it before calling; reading a stored report
	// needs it too, as every read does on a proxy without --admin-open-reads.
	out, _, err := tandemCLI(t, "verify", m)
	require.NoError(t, err, out)
	out, _, err = tandemCLI(t, "report", m)
	require.NoError(t, err, out)
	t.Setenv(envAdminToken, "")
	_, status, err = tandemCLI(t, "report", m, "--id", "latest")
	assert.Equal(t, exitFailed, status)
	assert.ErrorContains(t, err, "this admin API needs the token for reads too")
	_, status, err = tandemCLI(t, "report", m, "--id", "latest", "--include-values")
	assert.Equal(t, exitUsage, status)
	assert.ErrorContains(t, err, "no admin token")
	t.Setenv(envAdminToken, "wrong-token")
	_, status, err = tandemCLI(t, "report", m, "--id", "latest", "--include-values")
	assert.Equal(t, exitFailed, status)
	assert.ErrorContains(t, err, "the admin API refused the token")
	_, status, err = tandemCLI(t, "report", m)
	assert.Equal(t, exitFailed, status, "generating needs the token")
	assert.ErrorContains(t, err, "the admin API refused the token")
}

func TestValidateRefusesABudgetThatIsNotANumber(t *testing.T) {
	data, err := os.ReadFile("../../examples/users-v2.yaml")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "users-v2.yaml")
	require.NoError(t, os.WriteFile(path, append(data, "verify: {mismatch_budget: lots}\n"...), 0o600))
	lines := strings.Count(string(data), "\n") + 1
	out, status, _ := tandemCLI(t, "validate", path)
	assert.NotEqual(t, exitOK, status)
	assert.Regexp(t, regexp.QuoteMeta(path)+`:`+strconv.Itoa(lines)+`:\d+: verify.mismatch_budget: must be a whole number.*; got "lots"`, out)
}
