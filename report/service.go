package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/catalog"
)

// Service generates, stores, loads and signs release reports. It is safe for concurrent use.
type Service struct {
	// Source is what reports are generated from. Required.
	Source Source
	// Catalog stores the reports and their sign-offs. Required.
	Catalog *catalog.Catalog
	// Now dates generated reports. Optional; default time.Now.
	Now func() time.Time
}

// Generate generates a report of a migration, stores it under a new id and returns it as
// stored, values included (see Report.WithoutValues).
func (s *Service) Generate(ctx context.Context, name string) (Report, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	at := now().UTC().Truncate(time.Millisecond) // as the catalog keeps times
	id := bson.NewObjectID().Hex()
	r, err := Generate(ctx, s.Source, name, id, at)
	if err != nil {
		return Report{}, err
	}
	r.IncludesValues = true
	b, err := json.Marshal(r)
	if err != nil {
		return Report{}, fmt.Errorf("encoding the report of %s: %w", name, err)
	}
	if err := s.Catalog.SaveReleaseReport(ctx, name, id, string(b), at); err != nil {
		return Report{}, err
	}
	// What a later Load returns: the stored JSON decoded, so that both render the same.
	return decodeStored(name, id, string(b))
}

// Load returns a stored report (id, or catalog.LatestReport for the newest) with its
// sign-offs, values included. An unknown migration wraps ErrUnknownMigration, an unknown id
// ErrUnknownReport; both wrap catalog.ErrNotFound.
func (s *Service) Load(ctx context.Context, name, id string) (Report, error) {
	if _, err := s.Catalog.Migration(ctx, name); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return Report{}, fmt.Errorf("%w %s: %w", ErrUnknownMigration, name, catalog.ErrNotFound)
		}
		return Report{}, err
	}
	if _, err := bson.ObjectIDFromHex(id); err != nil && id != catalog.LatestReport {
		return Report{}, fmt.Errorf("%w %q for %s: not a report id (24 hex digits, or %s): %w", ErrUnknownReport, id, name, catalog.LatestReport, catalog.ErrNotFound)
	}
	stored, err := s.Catalog.ReleaseReport(ctx, name, id)
	if err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			if id == catalog.LatestReport {
				return Report{}, fmt.Errorf("%w: %s has no stored release report yet: %w", ErrUnknownReport, name, catalog.ErrNotFound)
			}
			return Report{}, fmt.Errorf("%w %q for %s: %w", ErrUnknownReport, id, name, catalog.ErrNotFound)
		}
		return Report{}, err
	}
	r, err := decodeStored(name, stored.ID.Hex(), stored.Content)
	if err != nil {
		return Report{}, err
	}
	signs, err := s.Catalog.SignOffs(ctx, name, r.ID)
	if err != nil {
		return Report{}, err
	}
	for _, so := range signs {
		r.SignOffs = append(r.SignOffs, SignOff{By: so.By, Comment: so.Comment, Verdict: so.Verdict, RecordedBy: so.Recorder, At: so.At.UTC()})
	}
	return r, nil
}

// Sign records a sign-off of a stored report (id, or catalog.LatestReport) by by, with a
// comment, in the audit trail (recorder names the caller), and returns the report with it.
func (s *Service) Sign(ctx context.Context, name, id, by, comment, recorder string) (Report, error) {
	by, comment = strings.TrimSpace(by), strings.TrimSpace(comment)
	switch {
	case by == "":
		return Report{}, ErrNoSigner
	case comment == "":
		return Report{}, ErrNoComment
	}
	r, err := s.Load(ctx, name, id)
	if err != nil {
		return Report{}, err
	}
	if err := s.Catalog.RecordSignOff(ctx, catalog.SignOff{
		Migration: name, ReportID: r.ID, Verdict: r.Verdict.Result, By: by, Comment: comment, Recorder: recorder,
	}); err != nil {
		return Report{}, err
	}
	return s.Load(ctx, name, r.ID)
}

// Sign-off errors.
var (
	// ErrNoSigner means a sign-off named nobody.
	ErrNoSigner = errors.New("a sign-off needs the signer's name")
	// ErrNoComment means a sign-off had no comment.
	ErrNoComment = errors.New("a sign-off needs a comment")
)

// decodeStored reads a stored report's JSON.
func decodeStored(name, id, content string) (Report, error) {
	var r Report
	if err := json.Unmarshal([]byte(content), &r); err != nil {
		return Report{}, fmt.Errorf("release report %s of %s cannot be read: %w", id, name, err)
	}
	if r.SchemaVersion != SchemaVersion {
		return Report{}, fmt.Errorf("release report %s of %s has schema version %d; this tandem reads %d", id, name, r.SchemaVersion, SchemaVersion)
	}
	r.SignOffs = []SignOff{}
	return r, nil
}
