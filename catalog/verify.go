package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// ReportKindVerify is the kind of the reports SaveVerifySummary writes; the cutover gate
// (flags.ReportKindVerify, the same string) reads the newest one.
const ReportKindVerify = "verify"

// VerifySummary is the outcome of one verification run, saved as the JSON Content of a report of
// kind ReportKindVerify. Its first five fields are those of flags.VerifySummary, which the
// cutover gate decodes (it ignores the others).
type VerifySummary struct {
	// Keys is the number of keys compared: every document of the old store, and every key found
	// only in the new store.
	Keys int64 `json:"keys"`
	// Mismatches is the number of keys that still differed after a recheck, transform failures
	// included; each has a Mismatch record.
	Mismatches int64 `json:"mismatches"`
	// Clean means the run went through every key and found no mismatch and no error. A run
	// that was cancelled or failed is never clean.
	Clean    bool      `json:"clean"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`

	// Missing, Extra, Differing and Untransformable split Mismatches: documents the new store
	// lacks, documents only the new store holds, documents whose fields differ, and documents
	// of the old store that the forward transform (or the new store's value mapping) rejects.
	Missing         int64 `json:"missing"`
	Extra           int64 `json:"extra"`
	Differing       int64 `json:"differing"`
	Untransformable int64 `json:"untransformable"`
	// Rechecked is the number of keys that differed at first sight and were read again; those
	// that then agreed were changed by a write during the run.
	Rechecked int64 `json:"rechecked"`
	// Repaired is the number of mismatches repaired; RepairFailed those whose repair failed.
	Repaired     int64 `json:"repaired"`
	RepairFailed int64 `json:"repair_failed"`
	// Errors counts keys that could not be verified: untransformable documents and documents
	// without a readable key.
	Errors int64 `json:"errors"`
	// Samples describes the first few mismatches and errors, one line each.
	Samples []string `json:"samples,omitempty"`
	// Aborted is the error that ended the run early; empty when it went through every key.
	Aborted string `json:"aborted,omitempty"`
}

// SaveVerifySummary stores s as the migration's newest verification report (kind
// ReportKindVerify, JSON content, dated now by the catalog's clock).
func (c *Catalog) SaveVerifySummary(ctx context.Context, migration string, s VerifySummary) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encoding the verification summary of %s: %w", migration, err)
	}
	_, err = c.SaveReport(ctx, Report{Migration: migration, Kind: ReportKindVerify, Content: string(b)})
	return err
}
