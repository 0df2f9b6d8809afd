package report

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of a report's JSON at SchemaVersion.
//
//go:embed schema/report-v1.json
var Schema []byte
