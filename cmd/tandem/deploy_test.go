package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"gopkg.in/yaml.v3"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/testenv"
)

// The deploy files, from this package's directory.
const (
	repoRoot       = "../.."
	alertRulesFile = repoRoot + "/deploy/prometheus/tandem-alerts.yml"
	alertTestsFile = repoRoot + "/deploy/prometheus/tandem-alerts.test.yml"
	dashboardFile  = repoRoot + "/deploy/grafana/tandem.json"
	runbooksDir    = repoRoot + "/docs/runbooks"
)

// TestAlertRulesPassPromtool runs `promtool check rules` on the alerting rules and `promtool
// test rules` on their unit tests (each alert firing with its labels and annotations, and not
// firing under its threshold). Under make test a missing promtool fails the test.
func TestAlertRulesPassPromtool(t *testing.T) {
	promtool := testenv.Promtool(t)
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(alertRulesFile)},
		{"test", "rules", filepath.Base(alertTestsFile)},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Dir(alertRulesFile)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool %s in deploy/prometheus:\n%s", strings.Join(args, " "), out)
		t.Logf("promtool %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	}
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlertRules(t *testing.T) []alertRule {
	t.Helper()
	var file struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	data, err := os.ReadFile(alertRulesFile)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &file), alertRulesFile)
	var rules []alertRule
	for _, g := range file.Groups {
		rules = append(rules, g.Rules...)
	}
	require.NotEmpty(t, rules, "%s has no rules", alertRulesFile)
	return rules
}

// The components an alert may name, and the severities (deploy/README.md says what each means).
var (
	alertComponents = []string{"proxy", "cdc", "journal", "verify", "backfill", "dead-letters", "new-store", "flags"}
	alertSeverities = []string{"critical", "warning"}
)

// TestAlertRulesAreActionable checks what makes an alert actionable: it names its component
// and severity, says what it is about (naming the migration when its expression keeps that
// label), gives a one-line remediation and the runbook that remedies it, a file that exists
// under docs/runbooks and that the runbooks' index lists; nothing links outside the repository.
// And every alert is unit-tested: it fires in tandem-alerts.test.yml, and some case of its
// alertname expects it not to.
func TestAlertRulesAreActionable(t *testing.T) {
	rules := loadAlertRules(t)
	index, err := os.ReadFile(filepath.Join(runbooksDir, "README.md"))
	require.NoError(t, err, "the runbooks' index")
	fired, quiet := alertTestCases(t)
	seen := map[string]bool{}
	for _, r := range rules {
		where := fmt.Sprintf("%s, alert %s", alertRulesFile, r.Alert)
		require.NotEmpty(t, r.Alert, "%s: a rule without an alert name (recording rules belong elsewhere)", alertRulesFile)
		assert.False(t, seen[r.Alert], "%s: named twice", where)
		seen[r.Alert] = true
		assert.Contains(t, alertComponents, r.Labels["component"], "%s: label component", where)
		assert.Contains(t, alertSeverities, r.Labels["severity"], "%s: label severity", where)
		for _, a := range []string{"summary", "description", "remediation", "runbook"} {
			assert.NotEmpty(t, strings.TrimSpace(r.Annotations[a]), "%s: annotation %s", where, a)
		}
		if regexp.MustCompile(`by \([^)]*\bmigration\b`).MatchString(r.Expr) {
			assert.Contains(t, r.Annotations["description"], "$labels.migration", "%s: the description must name the migration", where)
		}
		assert.NotContains(t, r.Annotations["remediation"], "\n", "%s: the remediation is one line", where)
		for k, v := range r.Annotations {
			assert.NotRegexp(t, `(?i)https?://`, v, "%s: annotation %s links outside the repository", where, k)
		}
		runbook := r.Annotations["runbook"]
		if assert.Regexp(t, `^docs/runbooks/[a-z0-9-]+\.md$`, runbook, "%s: runbook", where) {
			_, err := os.Stat(filepath.Join(repoRoot, runbook))
			assert.NoError(t, err, "%s: runbook %s", where, runbook)
			assert.Contains(t, string(index), r.Alert, "docs/runbooks/README.md does not list alert %s", r.Alert)
			assert.Contains(t, string(index), filepath.Base(runbook), "docs/runbooks/README.md does not link %s", runbook)
		}
		assert.True(t, fired[r.Alert], "%s: no case of %s fires it", where, alertTestsFile)
		assert.True(t, quiet[r.Alert], "%s: no case of %s expects it not to fire", where, alertTestsFile)
	}
	for name := range fired {
		assert.True(t, seen[name], "%s tests alert %s, which %s lacks", alertTestsFile, name, alertRulesFile)
	}
}

// alertTestCases reads the promtool unit tests: the alerts some case expects to fire, and those
// some case expects not to (exp_alerts empty).
func alertTestCases(t *testing.T) (fired, quiet map[string]bool) {
	t.Helper()
	var file struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []struct {
					ExpLabels map[string]string `yaml:"exp_labels"`
				} `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	data, err := os.ReadFile(alertTestsFile)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &file), alertTestsFile)
	require.Equal(t, []string{filepath.Base(alertRulesFile)}, file.RuleFiles, "%s tests the rules file", alertTestsFile)
	fired, quiet = map[string]bool{}, map[string]bool{}
	for _, tc := range file.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) == 0 {
				quiet[a.Alertname] = true
			} else {
				fired[a.Alertname] = true
			}
		}
	}
	return fired, quiet
}

// promqlString matches a PromQL string literal: double- or single-quoted with backslash
// escapes, or a raw backquoted string.
var promqlString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'` + "|`[^`]*`")

// tandemName matches an identifier starting with tandem_, not inside a longer identifier.
var tandemName = regexp.MustCompile(`(?:^|[^a-zA-Z0-9_:$])(tandem_[a-zA-Z0-9_:]*)`)

// metricNames returns the tandem metrics a PromQL expression (or a Grafana query such as
// label_values(…)) selects: every identifier starting with tandem_, once string literals are
// dropped (label values like migration=~"$migration" may hold anything). In tandem's queries
// such an identifier is always a metric name: no label, function or keyword starts with
// tandem_. A tokenizer rather than Prometheus' own parser (github.com/prometheus/prometheus/
// promql/parser): that module's dependency graph would enter go.mod and go.sum for this one
// test, and the parser would reject Grafana's $__rate_interval and label_values anyway.
func metricNames(expr string) []string {
	expr = promqlString.ReplaceAllString(expr, `""`)
	var names []string
	for _, m := range tandemName.FindAllStringSubmatch(expr, -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	return names
}

// TestMetricNames: the tokenizer takes metric names, including a histogram's series, and
// nothing inside string literals or longer identifiers.
func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (kind) (rate(tandem_proxy_errors_total{kind=~"upstream_dial|tandem_fake"}[5m])) > 0.1`:        {"tandem_proxy_errors_total"},
		`histogram_quantile(0.99, sum by (le) (rate(tandem_a_seconds_bucket[$__rate_interval]))) / tandem_b`:  {"tandem_a_seconds_bucket", "tandem_b"},
		`max by (migration) (tandem_x{migration=~'$migration', a="q\"tandem_y"}) and on (migration) tandem_x`: {"tandem_x"},
		"label_values(tandem_proxy_migration_requests_total, migration)":                                      {"tandem_proxy_migration_requests_total"},
		"time() - max(my_tandem_z) + `tandem_raw`":                                                            nil,
	} {
		assert.Equal(t, want, metricNames(expr), expr)
	}
}

// dashboardQueries returns every query of a Grafana dashboard: the panels' targets (rows'
// nested panels too) and the templating variables' queries, each named by where it is.
func dashboardQueries(t *testing.T, dash map[string]any) map[string]string {
	t.Helper()
	out := map[string]string{}
	var panels func(list []any)
	panels = func(list []any) {
		for _, p := range list {
			p := p.(map[string]any)
			if nested, ok := p["panels"].([]any); ok {
				panels(nested)
			}
			targets, _ := p["targets"].([]any)
			for _, tg := range targets {
				tg := tg.(map[string]any)
				expr, _ := tg["expr"].(string)
				require.NotEmpty(t, expr, "panel %q: target %v has no expr", p["title"], tg["refId"])
				out[fmt.Sprintf("panel %q target %v", p["title"], tg["refId"])] = expr
				ds, _ := tg["datasource"].(map[string]any)
				assert.Equal(t, "${datasource}", ds["uid"], "panel %q target %v: datasource", p["title"], tg["refId"])
			}
		}
	}
	list, _ := dash["panels"].([]any)
	panels(list)
	templating, _ := dash["templating"].(map[string]any)
	vars, _ := templating["list"].([]any)
	for _, v := range vars {
		v := v.(map[string]any)
		if v["type"] != "query" {
			continue
		}
		switch q := v["query"].(type) {
		case string:
			out[fmt.Sprintf("variable %v", v["name"])] = q
		case map[string]any:
			s, _ := q["query"].(string)
			out[fmt.Sprintf("variable %v", v["name"])] = s
		}
	}
	return out
}

func loadDashboard(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var dash map[string]any
	require.NoError(t, json.Unmarshal(data, &dash), dashboardFile)
	return dash
}

// TestDashboardShape: schema version, the datasource and migration variables every query uses.
func TestDashboardShape(t *testing.T) {
	dash := loadDashboard(t)
	assert.EqualValues(t, 39, dash["schemaVersion"])
	vars := map[string]string{}
	for _, v := range dash["templating"].(map[string]any)["list"].([]any) {
		v := v.(map[string]any)
		vars[v["name"].(string)] = v["type"].(string)
	}
	assert.Equal(t, map[string]string{"datasource": "datasource", "migration": "query"}, vars)
	queries := dashboardQueries(t, dash)
	require.NotEmpty(t, queries)
	for where, q := range queries {
		assert.NotEmpty(t, metricNames(q), "%s names no tandem metric: %s", where, q)
	}
}

// exposedMetrics reads a Prometheus text exposition: the name and type of every family, from
// its # TYPE line.
func exposedMetrics(body string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	return out
}

// missingMetrics returns the names not exposed: a histogram's (or summary's) _bucket, _sum and
// _count series count as its family's.
func missingMetrics(names []string, exposed map[string]string) []string {
	var missing []string
	for _, n := range names {
		if _, ok := exposed[n]; ok {
			continue
		}
		found := false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(n, suffix); ok {
				typ := exposed[base]
				found = found || typ == "histogram" || (typ == "summary" && suffix != "_bucket")
			}
		}
		if !found {
			missing = append(missing, n)
		}
	}
	return missing
}

// TestDashboardAndAlertsNameExposedMetrics runs `tandem run` with a migration spec, change
// capture (mongo-java-server), continuous verification and the backfill, in phase shadow, and
// checks that every metric the Grafana dashboard's queries and the alert rules' expressions
// name is on its /metrics: a dashboard panel or an alert on a metric tandem does not export
// (misspelled, renamed, never built) fails here. The series appear within seconds (some with
// the first report of a loop: the journal's lag after 5 s, verification's gauges after its
// full pass); the test waits for them, up to a minute and a half.
func TestDashboardAndAlertsNameExposedMetrics(t *testing.T) {
	used := map[string][]string{} // metric → where it is used
	for where, q := range dashboardQueries(t, loadDashboard(t)) {
		for _, n := range metricNames(q) {
			used[n] = append(used[n], "dashboard "+where)
		}
	}
	for _, r := range loadAlertRules(t) {
		for _, n := range metricNames(r.Expr) {
			used[n] = append(used[n], "alert "+r.Alert)
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)

	mj := testenv.StartMongoJavaT(t, testenv.MongoJavaOptions{})
	ctx := context.Background()
	direct, err := mongo.Connect(options.Client().ApplyURI(mj.URI()))
	require.NoError(t, err)
	defer direct.Disconnect(ctx)
	docs := make([]any, 20)
	for i := range docs {
		docs[i] = e2eUser(fmt.Sprintf("d%03d", i), i)
	}
	_, err = direct.Database("deploy").Collection("users").InsertMany(ctx, docs)
	require.NoError(t, err)
	specPath := e2eSpec(t, mj.URI(), mj.URI(), "deploy")
	_, adminURL, _, stop := runCommand(t, "run", "--upstream", mj.URI(), "--spec", specPath, "--cdc", "on",
		"--verify-continuous", "--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--admin-token-file", tokenFile(t), "--flags-poll", "50ms", "--batch", "10", "--partitions", "2")
	api, err := admin.NewClient(adminURL, e2eToken, nil)
	require.NoError(t, err)
	_, err = api.Advance(ctx, "users-v2", flags.PhaseShadow, "deploy metrics test")
	require.NoError(t, err)

	var missing []string
	var exposed map[string]string
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, body := httpGet(t, adminURL+"/metrics")
		exposed = exposedMetrics(body)
		if missing = missingMetrics(names, exposed); len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, n := range missing {
		t.Errorf("metric %s is not on /metrics of tandem run; used by %s", n, strings.Join(used[n], ", "))
	}
	if len(missing) > 0 {
		var have []string
		for n := range exposed {
			if strings.HasPrefix(n, "tandem_") {
				have = append(have, n)
			}
		}
		sort.Strings(have)
		t.Logf("tandem metrics exposed: %s", strings.Join(have, " "))
	}
	if len(missing) == 0 {
		t.Logf("%d metric names of the dashboard and the alerts, all on /metrics: %s", len(names), strings.Join(names, " "))
	}
	require.NoError(t, stop())
}
