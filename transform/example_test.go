package transform_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/transform"
)

const examplePath = "../examples/users-v2.yaml"

func sampleUser(i int) bson.D {
	return bson.D{
		{Key: "_id", Value: fmt.Sprintf("user-%06d", i)},
		{Key: "name", Value: fmt.Sprintf("User %d", i)},
		{Key: "email", Value: fmt.Sprintf("user%d@example.com", i)},
		{Key: "age", Value: int32(18 + i%60)},
		{Key: "created", Value: bson.NewDateTimeFromTime(time.Date(2024, 1, 2, 3, 4, 5, 6e6, time.UTC).Add(time.Duration(i) * time.Hour))},
	}
}

func TestExampleUsersV2(t *testing.T) {
	spec, err := transform.Load(examplePath)
	require.NoError(t, err)

	assert.Equal(t, "users-v2", spec.Name)
	assert.Equal(t, transform.Endpoint{Kind: "mongodb", URI: "mongodb://127.0.0.1:27017/", Database: "demo", Collection: "users"}, spec.Source)
	assert.Equal(t, "mongodb demo.users_v2", spec.Target.String())
	assert.Equal(t, transform.Key{Source: "_id", Target: "_id"}, spec.Key)
	assert.Len(t, spec.Version, 16)
	assert.True(t, spec.ReverseDerived())
	assert.Len(t, spec.Steps(), 6)
	assert.Equal(t, transform.StepInfo{Index: 0, Kind: "drop", Summary: "schema_version"}, spec.ReverseSteps()[0])

	user := sampleUser(1)
	before := bson.D{}
	before = append(before, user...)

	got, err := spec.Forward(user)
	require.NoError(t, err)
	want := bson.D{
		{Key: "_id", Value: "user-000001"},
		{Key: "age", Value: int64(19)},
		{Key: "created", Value: "2024-01-02T04:04:05.006Z"},
		{Key: "email_domain", Value: "example.com"},
		{Key: "profile", Value: bson.D{{Key: "full_name", Value: "User 1"}, {Key: "email", Value: "user1@example.com"}}},
		{Key: "schema_version", Value: int32(2)},
	}
	assert.Equal(t, want, got)
	assert.Equal(t, before, user, "Forward must not modify its input")

	back, err := spec.Reverse(got)
	require.NoError(t, err)
	assert.True(t, transform.Equal(user, back), "reverse(forward(d)) = %v", back)
}

// The package's own example: parse a spec, transform a document and undo it.
func Example() {
	spec, err := transform.Parse("inline.yaml", []byte(`
name: rename-demo
source: {mongodb: {uri: "mongodb://localhost/", database: demo, collection: users}}
target: {mongodb: {uri: "mongodb://localhost/", database: demo, collection: users_v2}}
forward:
  - rename: {from: name, to: profile.full_name}
  - convert: {path: age, from: int32, to: string}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, st := range spec.ReverseSteps() {
		fmt.Printf("reverse[%d] %s %s\n", st.Index, st.Kind, st.Summary)
	}
	doc := bson.D{{Key: "_id", Value: int32(1)}, {Key: "name", Value: "Ada"}, {Key: "age", Value: int32(36)}}
	out, _ := spec.Forward(doc)
	fmt.Println(out)
	back, _ := spec.Reverse(out)
	fmt.Println(back)
	// Output:
	// reverse[0] convert age string -> int32, on_error fail
	// reverse[1] rename profile.full_name -> name
	// {"_id":{"$numberInt":"1"},"age":"36","profile":{"full_name":"Ada"}}
	// {"_id":{"$numberInt":"1"},"age":{"$numberInt":"36"},"name":"Ada"}
}
