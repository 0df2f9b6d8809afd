package backfill

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/tandemdb/tandem/catalog"
)

// Pause stops every worker of every process running the migration's backfill within one poll
// (Config.Poll, at most 1s): each finishes the chunk it is writing and waits, keeping its
// leases. The change is audited with who and why. A backfill never started, finished or already
// paused is refused with ErrNotStarted, ErrFinished or ErrAlreadyPaused.
func Pause(ctx context.Context, c *catalog.Catalog, migration, who, why string) error {
	if err := checkRunning(ctx, c, migration); err != nil {
		return fmt.Errorf("pausing the backfill of %s: %w", migration, err)
	}
	_, err := c.ChangeBackfillControl(ctx, migration, who, why, func(ctl catalog.BackfillControl) (catalog.BackfillControl, catalog.AuditEntry, error) {
		if ctl.Paused {
			return ctl, catalog.AuditEntry{}, ErrAlreadyPaused
		}
		ctl.Paused = true
		return ctl, catalog.AuditEntry{Subject: "paused", From: "false", To: "true"}, nil
	})
	if err != nil {
		return fmt.Errorf("pausing the backfill of %s: %w", migration, mapNotFound(err))
	}
	return nil
}

// Resume lets a paused backfill go on within one poll; ErrNotPaused if it is not paused.
func Resume(ctx context.Context, c *catalog.Catalog, migration, who, why string) error {
	_, err := c.ChangeBackfillControl(ctx, migration, who, why, func(ctl catalog.BackfillControl) (catalog.BackfillControl, catalog.AuditEntry, error) {
		if !ctl.Paused {
			return ctl, catalog.AuditEntry{}, ErrNotPaused
		}
		ctl.Paused = false
		return ctl, catalog.AuditEntry{Subject: "paused", From: "true", To: "false"}, nil
	})
	if err != nil {
		return fmt.Errorf("resuming the backfill of %s: %w", migration, mapNotFound(err))
	}
	return nil
}

// SetRate sets the backfill's limit in documents per second, for all its processes together
// (each takes an equal share), effective within one poll and audited. docsPerSec must be more
// than 0; Unlimited removes the limit. It may be set on a finished backfill (to little effect).
func SetRate(ctx context.Context, c *catalog.Catalog, migration string, docsPerSec float64, who, why string) error {
	return setRate(ctx, c, migration, "--rate", "rate", docsPerSec, who, why)
}

// SetBytesRate is SetRate for bytes per second (of the target's BSON encoding).
func SetBytesRate(ctx context.Context, c *catalog.Catalog, migration string, bytesPerSec float64, who, why string) error {
	return setRate(ctx, c, migration, "--bytes-rate", "bytes_rate", bytesPerSec, who, why)
}

func setRate(ctx context.Context, c *catalog.Catalog, migration, option, subject string, r float64, who, why string) error {
	if err := checkRate(option, r, false); err != nil {
		return err
	}
	stored := r
	if math.IsInf(r, 1) {
		stored = 0
	}
	_, err := c.ChangeBackfillControl(ctx, migration, who, why, func(ctl catalog.BackfillControl) (catalog.BackfillControl, catalog.AuditEntry, error) {
		field := &ctl.Rate
		if subject == "bytes_rate" {
			field = &ctl.BytesRate
		}
		e := catalog.AuditEntry{Subject: subject, From: rateString(*field), To: rateString(stored)}
		*field = stored
		return ctl, e, nil
	})
	if err != nil {
		return fmt.Errorf("setting the backfill %s of %s: %w", subject, migration, mapNotFound(err))
	}
	return nil
}

// rateString renders a stored rate for the audit trail: "unlimited" for 0.
func rateString(r float64) string {
	if r <= 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(r, 'g', -1, 64)
}

// ParseRate reads a rate as the CLI takes it: a positive number, or "unlimited". option names
// the flag in errors.
func ParseRate(option, s string) (float64, error) {
	if s == "unlimited" {
		return Unlimited, nil
	}
	r, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not a number or \"unlimited\"", ErrInvalidRate, option, s)
	}
	if err := checkRate(option, r, false); err != nil {
		return 0, err
	}
	return r, nil
}

// checkRunning refuses a backfill that has no plan or whose partitions are all done.
func checkRunning(ctx context.Context, c *catalog.Catalog, migration string) error {
	p, err := Status(ctx, c, migration)
	if err != nil {
		return err
	}
	if p.Partitions > 0 && p.PartitionsDone == p.Partitions || p.State == StateDone {
		return fmt.Errorf("%w (%d of %d partitions done)", ErrFinished, p.PartitionsDone, p.Partitions)
	}
	return nil
}

// mapNotFound turns the catalog's missing plan into ErrNotStarted.
func mapNotFound(err error) error {
	if errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("%w: no backfill plan in the catalog (run the backfill first)", ErrNotStarted)
	}
	return err
}
