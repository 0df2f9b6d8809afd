package transform

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedactURI(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"user and password", "mongodb://user:pass@h:27017/db?w=1", "mongodb://REDACTED@h:27017/db?w=1"},
		{"srv", "mongodb+srv://u:p@cluster0.example.net/?retryWrites=true", "mongodb+srv://REDACTED@cluster0.example.net/?retryWrites=true"},
		{"no user information", "mongodb://h1:27017,h2:27017/?replicaSet=rs", "mongodb://h1:27017,h2:27017/?replicaSet=rs"},
		{"user only", "mongodb://CN=client@h/?authMechanism=MONGODB-X509", "mongodb://REDACTED@h/?authMechanism=MONGODB-X509"},
		{"empty password", "mongodb://u:@h/", "mongodb://REDACTED@h/"},
		{"empty user information", "mongodb://@h/", "mongodb://REDACTED@h/"},
		{"percent-encoded", "mongodb://u%40x:p%2F%3A%40@h/", "mongodb://REDACTED@h/"},
		{"unescaped @ in the password", "mongodb://u:p@ss@h/", "mongodb://REDACTED@h/"},
		{"unescaped / in the password", "mongodb://u:pa/ss@h/db", "mongodb://REDACTED@h/db"},
		{"space in the password", "mongodb://u:p ss@h/", "mongodb://REDACTED@h/"},
		{"IPv6 host", "mongodb://u:p@[::1]:27017/", "mongodb://REDACTED@[::1]:27017/"},
		{"AWS session token", "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:abc",
			"mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=REDACTED"},
		{"key file password, any case", "mongodb://h/?tls=true;TLSCertificateKeyFilePassword=pw;appName=x",
			"mongodb://h/?tls=true;TLSCertificateKeyFilePassword=REDACTED;appName=x"},
		{"http endpoint", "http://AKIA:secret@127.0.0.1:5000/p?X-Amz-Security-Token=tok&a=b#frag",
			"http://REDACTED@127.0.0.1:5000/p?X-Amz-Security-Token=REDACTED&a=b#frag"},
		{"parameter without a value", "mongodb://h/?password", "mongodb://h/?password"},
		{"no scheme", "u:p@h/", "REDACTED@h/"},
		{"not a URI", "not a uri", "not a uri"},
		{"empty", "", ""},
		{"already redacted", "mongodb://REDACTED@h/?password=REDACTED", "mongodb://REDACTED@h/?password=REDACTED"},
		{"references are redacted too", "mongodb://${U}:${P}@h/", "mongodb://REDACTED@h/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := RedactURI(tc.in)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, got, RedactURI(got), "idempotent")
		})
	}
}

func TestRedactText(t *testing.T) {
	cases := []struct{ in, want string }{
		{"dial mongodb://u:p@h:27017/: connection refused", "dial mongodb://REDACTED@h:27017/: connection refused"},
		{`uri "mongodb+srv://u:p@c/" and 'http://a:b@d/?token=t'`, `uri "mongodb+srv://REDACTED@c/" and 'http://REDACTED@d/?token=REDACTED'`},
		{"an address a@b is no URI", "an address a@b is no URI"},
		{"://u:p@h", "://REDACTED@h"},
		{"no URIs", "no URIs"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, RedactText(tc.in), tc.in)
	}
}

func TestSpecRedacted(t *testing.T) {
	src := `name: t
# was: mongodb://admin:hunter2@old.example.net/
source: {mongodb: {uri: "mongodb://app:hunter2@db.example.net/?authSource=admin", database: d, collection: a}}
target:
  dynamodb:
    table: users
    region: us-east-1
    endpoint: http://AKIA:hunter2@127.0.0.1:5000/?X-Amz-Security-Token=hunter2
key: {partition: pk}
forward:
  - set: {path: a, value: "mongodb://${U}:${P}@h/?password=${P}"}
  - set: {path: b, value: "see mongodb://u:hunter2@h/"}
  - rename: {from: x, to: y}
reverse: []
`
	want := strings.NewReplacer(
		"admin:hunter2@", "REDACTED@", "app:hunter2@", "REDACTED@", "AKIA:hunter2@", "REDACTED@",
		"Token=hunter2", "Token=REDACTED", "u:hunter2@", "REDACTED@").Replace(src)
	spec, err := Parse("r.yaml", []byte(src), env("U", "user", "P", "hunter2"))
	require.NoError(t, err)
	assert.Equal(t, want, spec.Redacted(), "the file's text, byte for byte, but for the credentials")
	assert.NotContains(t, spec.Redacted(), "hunter2")
	assert.Contains(t, spec.Redacted(), "mongodb://${U}:${P}@h/?password=${P}", "references are kept")

	// The stored text is a spec too.
	again, err := Parse("r.yaml", []byte(spec.Redacted()), env("U", "user", "P", "hunter2"))
	require.NoError(t, err)
	assert.Equal(t, spec.Version, again.Version)
	assert.Equal(t, "mongodb://REDACTED@db.example.net/?authSource=admin", again.Source.URI)
}

// A credential that the text cannot be cut out of (an escape, a folded line) is removed by
// re-encoding the YAML tree.
func TestSpecRedactedReencodes(t *testing.T) {
	for name, uri := range map[string]string{
		"escaped @":   `"mongodb://u:hunter2\x40h/"`,
		"folded line": "mongodb://u:hunter2\n      x@h/",
	} {
		t.Run(name, func(t *testing.T) {
			src := "name: t\n# the source\nsource:\n  mongodb:\n    uri: " + uri + "\n    database: d\n    collection: a\n" + tgtLine + okStep
			spec, err := Parse("r.yaml", []byte(src))
			require.NoError(t, err)
			assert.Contains(t, spec.Source.URI, "hunter2")
			red := spec.Redacted()
			assert.NotContains(t, red, "hunter2")
			assert.Contains(t, red, "# the source")
			again, err := Parse("r.yaml", []byte(red))
			require.NoError(t, err, red)
			assert.Equal(t, "mongodb://REDACTED@h/", again.Source.URI)
			require.Len(t, again.Steps(), 1)
			assert.Equal(t, spec.Steps()[0].Summary, again.Steps()[0].Summary)
		})
	}
}

func TestVersionIgnoresPasswords(t *testing.T) {
	inline := func(pw string) string {
		return strings.Replace(body(okStep), `"mongodb://h/", database: d, collection: a`, `"mongodb://u:`+pw+`@h/", database: d, collection: a`, 1)
	}
	version := func(src string, opts ...ParseOption) string {
		t.Helper()
		spec, err := Parse("v.yaml", []byte(src), opts...)
		require.NoError(t, err)
		return spec.Version
	}
	assert.Equal(t, version(inline("old")), version(inline("new")), "an inline password")
	fromEnv := inline("${PW}")
	assert.Equal(t, version(fromEnv, env("PW", "old")), version(fromEnv, env("PW", "new")), "a password from the environment")
	assert.NotEqual(t, version(inline("old")), version(strings.Replace(inline("old"), "@h/", "@other/", 1)), "another host")
	assert.NotEqual(t, version(body(okStep)), version(inline("old")), "credentials where there were none")
}

// No error, String, summary or stored text holds the password, however the spec spells it.
func TestPasswordNeverPrinted(t *testing.T) {
	const pw = "hunter2-PW"
	lookup := env("PW", pw, "URI", "mongodb://u:"+pw+"@h/")
	uri := func(u string) string {
		return "name: t\nsource: {mongodb: {uri: \"" + u + "\", database: d, collection: a}}\n" + tgtLine
	}
	bad := map[string]string{
		"bad scheme":             uri("http://u:"+pw+"@h/") + okStep,
		"malformed reference":    uri("mongodb://u:hun${ter2-PW@h/") + okStep,
		"unset next to inline":   uri("mongodb://u:"+pw+"@${HOST}/") + okStep,
		"bad endpoint":           "name: t\n" + srcLine + "target: {dynamodb: {table: abc, region: us-east-1, endpoint: \"ftp://a:" + pw + "@h/\"}}\nkey: {partition: pk}\n" + okStep,
		"bad endpoint from env":  "name: t\n" + srcLine + "target: {dynamodb: {table: abc, region: us-east-1, endpoint: \"${URI}\"}}\nkey: {partition: pk}\n" + okStep,
		"name":                   "name: \"${URI}\"\n" + srcLine + tgtLine + okStep,
		"irreversible summary":   body("forward:\n  - convert: {path: a, to: string, on_error: default, default: \"mongodb://u:" + pw + "@h/\"}\n"),
		"target is the source":   uri("${URI}") + "target: {mongodb: {uri: \"${URI}\", database: d, collection: a}}\n" + okStep,
		"syntax error":           uri("mongodb://u:"+pw+"@h/") + "forward: [\n",
		"unknown key in the uri": "name: t\nsource: {mongodb: {uri: {mongodb://u:" + pw + "@h/: 1}, database: d, collection: a}}\n" + tgtLine + okStep,
	}
	for name, src := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(src), lookup)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), pw)
			assert.NotContains(t, err.Error(), "ter2")
		})
	}

	src := "name: t\n# admin: mongodb://admin:" + pw + "@h/\n" +
		"source: {mongodb: {uri: \"mongodb://u:" + pw + "@h/\", database: d, collection: a}}\n" +
		"target: {mongodb: {uri: \"${URI}\", database: d, collection: b}}\n" +
		"forward:\n  - set: {path: a, value: \"mongodb://u:${PW}@h/\"}\n  - compute: {path: c, expr: '\"mongodb://u:" + pw + "@h/\"'}\n"
	spec, err := Parse("p.yaml", []byte(src), lookup)
	require.NoError(t, err)
	printed := []string{spec.Redacted(), spec.Source.String(), spec.Target.String(), fmt.Sprintf("%v %+v", spec.Source, spec.Target),
		RedactURI(spec.Source.URI), RedactURI(spec.Target.URI)}
	for _, st := range append(spec.Steps(), spec.ReverseSteps()...) {
		printed = append(printed, st.Summary)
	}
	for _, p := range printed {
		assert.NotContains(t, p, pw)
	}
	assert.Contains(t, spec.Source.URI, pw, "the spec itself holds the password, to connect with")
}

// In a spec's stored text, credentials written only as references stay; anything literal goes.
func TestRedactKeepsOnlyReferences(t *testing.T) {
	cases := []struct{ in, want string }{
		{"mongodb://${U}:${P}@h/", "mongodb://${U}:${P}@h/"},
		{"mongodb://${U}@h/", "mongodb://${U}@h/"},
		{"mongodb://${U}${V}:${P}@h/", "mongodb://${U}${V}:${P}@h/"},
		{"mongodb://admin:${P}@h/", "mongodb://REDACTED@h/"},
		{"mongodb://$${U}:${P}@h/", "mongodb://REDACTED@h/"},
		{"mongodb://:@h/", "mongodb://REDACTED@h/"},
		{"mongodb://h/?password=${P}&a=b", "mongodb://h/?password=${P}&a=b"},
		{"mongodb://h/?password=x${P}", "mongodb://h/?password=REDACTED"},
		{"mongodb://h/?authMechanismProperties=AWS_SESSION_TOKEN:${T}", "mongodb://h/?authMechanismProperties=REDACTED"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, redactValue(tc.in, true), tc.in)
		assert.NotContains(t, RedactURI(tc.in), "${P}", "RedactURI keeps no references")
	}
}

// An edit of the text that would read differently from the redacted YAML tree (here a
// parameter that the text ends at a space and the value at its end) is not stored; the
// re-encoded tree is.
func TestSpecRedactedKeepsStructure(t *testing.T) {
	spec, err := Parse("s.yaml", []byte(body("forward:\n  - set:\n      path: a\n      value: http://h/?token=hunter2, 2\n")))
	require.NoError(t, err)
	red := spec.Redacted()
	assert.NotContains(t, red, "hunter2")
	again, err := Parse("s.yaml", []byte(red))
	require.NoError(t, err, red)
	got, err := again.Forward(D("_id", 1))
	require.NoError(t, err)
	assert.Equal(t, D("_id", 1, "a", "http://h/?token=REDACTED"), got)
}
