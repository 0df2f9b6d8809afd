// Package examples holds the example migration specs, embedded so that `tandem demo` runs the
// same spec the README walks through.
package examples

import _ "embed"

// UsersV2 is examples/users-v2.yaml: demo.users → demo.users_v2.
//
//go:embed users-v2.yaml
var UsersV2 []byte
