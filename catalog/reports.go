package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ReportKindRelease is the kind of the release reports (package report) kept in the reports
// collection: their Content is the report's JSON as it was generated. The cutover gate reads
// only kind ReportKindVerify, so release reports never stand in for a verification.
const ReportKindRelease = "release"

// KindSignOff is the audit kind of a release report's sign-off.
const KindSignOff = "signoff"

// LatestReport names a migration's newest release report wherever a report id is taken.
const LatestReport = "latest"

// SaveReleaseReport stores a release report under id (a bson ObjectID in hex, chosen by the
// caller so that the report's content can carry its own id). at dates it; zero means now.
func (c *Catalog) SaveReleaseReport(ctx context.Context, migration, id, content string, at time.Time) error {
	oid, err := bson.ObjectIDFromHex(id)
	if err != nil {
		return fmt.Errorf("saving release report of %s: id %q is not a report id: %w", migration, id, err)
	}
	if at.IsZero() {
		at = c.now().UTC()
	}
	r := Report{ID: oid, Migration: migration, Kind: ReportKindRelease, Content: content, At: at}
	if _, err := c.db.Collection(collReports).InsertOne(ctx, r); err != nil {
		return fmt.Errorf("saving release report %s of %s: %w", id, migration, err)
	}
	return nil
}

// ReleaseReport returns one of a migration's release reports by id, or its newest one for
// LatestReport. An id that is malformed, unknown, or another migration's gives ErrNotFound.
func (c *Catalog) ReleaseReport(ctx context.Context, migration, id string) (Report, error) {
	if id == LatestReport {
		rs, err := c.Reports(ctx, migration, ReportKindRelease, 1)
		if err != nil {
			return Report{}, err
		}
		if len(rs) == 0 {
			return Report{}, fmt.Errorf("release reports of %s: none stored: %w", migration, ErrNotFound)
		}
		return rs[0], nil
	}
	oid, err := bson.ObjectIDFromHex(id)
	if err != nil {
		return Report{}, fmt.Errorf("release report %q of %s: not a report id (24 hex digits or %q): %w", id, migration, LatestReport, ErrNotFound)
	}
	var r Report
	err = c.db.Collection(collReports).FindOne(ctx, bson.D{
		{Key: "_id", Value: oid}, {Key: "migration", Value: migration}, {Key: "kind", Value: ReportKindRelease},
	}).Decode(&r)
	if err != nil {
		return Report{}, notFound(err, fmt.Sprintf("release report %s of %s", id, migration))
	}
	return r, nil
}

// SignOff is a release manager's sign-off of one release report, kept in the audit trail as an
// entry of kind KindSignOff: Subject the report id, From the verdict that was signed, To the
// signer, Why the comment, Who the caller that recorded it (the admin API's "api:…").
type SignOff struct {
	Migration string    `json:"migration"`
	ReportID  string    `json:"report_id"`
	Verdict   string    `json:"verdict"`
	By        string    `json:"by"`
	Comment   string    `json:"comment"`
	Recorder  string    `json:"recorded_by"`
	At        time.Time `json:"at"`
}

// RecordSignOff appends a sign-off to the audit trail; it changes no migration field.
func (c *Catalog) RecordSignOff(ctx context.Context, s SignOff) error {
	switch {
	case s.ReportID == "":
		return errors.New("recording a sign-off: no report id")
	case s.By == "":
		return fmt.Errorf("recording a sign-off of report %s: no signer", s.ReportID)
	}
	return c.RecordAudit(ctx, AuditEntry{
		Migration: s.Migration, Kind: KindSignOff, Subject: s.ReportID,
		From: s.Verdict, To: s.By, Who: s.Recorder, Why: s.Comment, At: s.At,
	})
}

// SignOffs returns the sign-offs of one release report, oldest first.
func (c *Catalog) SignOffs(ctx context.Context, migration, reportID string) ([]SignOff, error) {
	cur, err := c.db.Collection(collAudit).Find(ctx,
		bson.D{{Key: "migration", Value: migration}, {Key: "kind", Value: KindSignOff}, {Key: "subject", Value: reportID}},
		options.Find().SetSort(bson.D{{Key: "at", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("reading sign-offs of report %s of %s: %w", reportID, migration, err)
	}
	var entries []AuditEntry
	if err := cur.All(ctx, &entries); err != nil {
		return nil, fmt.Errorf("reading sign-offs of report %s of %s: %w", reportID, migration, err)
	}
	out := make([]SignOff, len(entries))
	for i, e := range entries {
		out[i] = SignOff{Migration: e.Migration, ReportID: e.Subject, Verdict: e.From, By: e.To, Comment: e.Why, Recorder: e.Who, At: e.At}
	}
	return out, nil
}

// MismatchesFoundBetween returns a migration's mismatches recorded by source (any source when
// empty) with from <= found_at <= to, oldest first, at most limit (0: all): those one
// verification run found.
func (c *Catalog) MismatchesFoundBetween(ctx context.Context, migration, source string, from, to time.Time, limit int64) ([]Mismatch, error) {
	filter := bson.D{{Key: "migration", Value: migration},
		{Key: "found_at", Value: bson.D{{Key: "$gte", Value: from.UTC()}, {Key: "$lte", Value: to.UTC()}}}}
	if source != "" {
		filter = append(filter, bson.E{Key: "source", Value: source})
	}
	opts := options.Find().SetSort(bson.D{{Key: "found_at", Value: 1}, {Key: "_id", Value: 1}})
	if limit > 0 {
		opts.SetLimit(limit)
	}
	cur, err := c.db.Collection(collMismatches).Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("reading mismatches of %s: %w", migration, err)
	}
	var out []Mismatch
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading mismatches of %s: %w", migration, err)
	}
	return out, nil
}
