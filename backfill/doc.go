// Package backfill copies the history of a migration's source to its target.
package backfill
