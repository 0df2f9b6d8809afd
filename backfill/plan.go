package backfill

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// PlanResult is what a dry run (Plan) found, or what Prepare stored.
type PlanResult struct {
	// Stored says the plan is the one in the catalog (a backfill was prepared or has run);
	// otherwise it is what a run would store now.
	Stored bool   `json:"stored"`
	PlanID string `json:"plan_id,omitempty"`
	// Estimate is the number of source documents; Classes splits it by key type (MongoDB).
	Estimate int64        `json:"estimate"`
	Classes  []ClassCount `json:"classes,omitempty"`
	// Partitions is the plan.
	Partitions []catalog.BackfillPartition `json:"partitions"`
	// TargetExists and TargetEmpty describe the target now; a run refuses a target that is not
	// empty unless AllowExisting (or a plan is stored: it wrote them).
	TargetExists bool `json:"target_exists"`
	TargetEmpty  bool `json:"target_empty"`
	// Sample holds up to Config.Sample documents per partition (at most 20), transformed.
	Sample []SampleDoc `json:"sample,omitempty"`
}

// SampleDoc is one source document of a dry run and what the backfill would write for it.
type SampleDoc struct {
	Key    string `json:"key"`
	Source bson.D `json:"source"`
	Target bson.D `json:"target,omitempty"`
	// Error is why the document would be dead-lettered, with the failing step.
	Error string `json:"error,omitempty"`
}

// Plan is the dry run: it checks the source and the target, counts the source's documents by
// key type, makes (or reads) the partition plan and transforms a sample, and writes nothing.
func Plan(ctx context.Context, cfg Config) (PlanResult, error) {
	b, err := New(cfg)
	if err != nil {
		return PlanResult{}, err
	}
	var res PlanResult
	if err := b.checkSource(ctx); err != nil {
		return res, err
	}
	if res.TargetExists, res.TargetEmpty, err = b.targetState(ctx); err != nil {
		return res, err
	}
	plan, err := b.cfg.Catalog.BackfillPlan(ctx, b.cfg.Migration)
	switch {
	case err == nil:
		res.Stored, res.PlanID, res.Estimate = true, plan.PlanID, plan.Estimate
		if res.Partitions, err = b.cfg.Catalog.BackfillPartitions(ctx, b.cfg.Migration, plan.PlanID); err != nil {
			return res, err
		}
	case errors.Is(err, catalog.ErrNotFound):
		if res.Partitions, res.Classes, err = planPartitions(ctx, b.cfg.Old, b.keyField(), b.cfg.Partitions, b.cfg.SampledPartitions); err != nil {
			return res, err
		}
		for _, p := range res.Partitions {
			res.Estimate += p.Estimate
		}
		if res.Classes != nil {
			res.Estimate = 0
			for _, c := range res.Classes {
				res.Estimate += c.Count
			}
		}
	default:
		return res, err
	}
	for _, p := range res.Partitions {
		if len(res.Sample) >= 20 {
			break
		}
		n := 0
		errStop := errors.New("enough")
		err := b.cfg.Old.Scan(ctx, partitionOf(p), adapters.ScanOptions{Batch: b.cfg.Sample}, func(docs []bson.D) error {
			for _, d := range docs {
				if n >= b.cfg.Sample || len(res.Sample) >= 20 {
					return errStop
				}
				n++
				key, err := b.cfg.Old.KeyOf(d)
				s := SampleDoc{Key: adapters.KeyString(key), Source: d}
				if err == nil {
					it, step, perr := b.prepareDoc(key, d)
					if perr != nil {
						s.Error = step + ": " + perr.Error()
					} else {
						s.Target = it.op.Doc
					}
				} else {
					s.Error = err.Error()
				}
				res.Sample = append(res.Sample, s)
			}
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			return res, fmt.Errorf("dry run: reading a sample of partition %d: %w", p.Index, err)
		}
	}
	return res, nil
}

// Prepare makes the backfill ready to run without copying: it creates the target when absent
// (a MongoDB collection with the spec's indexes, or a DynamoDB table), refuses a target that
// already holds documents unless AllowExisting, and stores the partition plan, unless a plan is
// stored already (then it only makes sure the target exists). Run calls it; call it yourself to
// create the target before the proxy's converges start writing to it.
func Prepare(ctx context.Context, cfg Config) (PlanResult, error) {
	b, err := New(cfg)
	if err != nil {
		return PlanResult{}, err
	}
	plan, parts, err := b.prepare(ctx)
	if err != nil {
		return PlanResult{}, err
	}
	return PlanResult{Stored: true, PlanID: plan.PlanID, Estimate: plan.Estimate, Partitions: parts, TargetExists: true}, nil
}

func (b *Backfill) prepare(ctx context.Context) (catalog.BackfillPlan, []catalog.BackfillPartition, error) {
	var plan catalog.BackfillPlan
	var found bool
	if err := b.retry(ctx, "read plan", func(ctx context.Context) error {
		p, err := b.cfg.Catalog.BackfillPlan(ctx, b.cfg.Migration)
		if errors.Is(err, catalog.ErrNotFound) {
			return nil
		}
		plan, found = p, err == nil
		return err
	}); err != nil {
		return plan, nil, err
	}
	if !found {
		if err := b.checkSource(ctx); err != nil {
			return plan, nil, err
		}
		created, err := b.provisionTarget(ctx)
		if err != nil {
			return plan, nil, err
		}
		if !b.cfg.AllowExisting {
			_, empty, err := b.targetState(ctx)
			if err != nil {
				return plan, nil, err
			}
			if !empty {
				// Another process may have stored a plan and started writing meanwhile.
				if p, perr := b.cfg.Catalog.BackfillPlan(ctx, b.cfg.Migration); perr == nil {
					plan, found = p, true
				} else {
					return plan, nil, fmt.Errorf("%w: %s holds documents the backfill did not write; empty it or pass --allow-existing",
						ErrTargetNotEmpty, b.cfg.Spec.Target)
				}
			}
		}
		if !found {
			parts, classes, err := planPartitions(ctx, b.cfg.Old, b.keyField(), b.cfg.Partitions, b.cfg.SampledPartitions)
			if err != nil {
				return plan, nil, err
			}
			var est int64
			for _, c := range classes {
				est += c.Count
			}
			if classes == nil {
				for _, p := range parts {
					est += p.Estimate
				}
			}
			plan = catalog.BackfillPlan{
				Migration: b.cfg.Migration, PlanID: bson.NewObjectID().Hex(), SpecVersion: b.cfg.Spec.Version,
				Source: b.cfg.Spec.Source.String(), Target: b.cfg.Spec.Target.String(), Partitions: len(parts),
				Estimate: est, CreatedBy: b.cfg.Owner, TargetCreated: created,
			}
			stored, mine, err := b.cfg.Catalog.CreateBackfillPlan(ctx, plan, parts)
			if err != nil {
				return plan, nil, err
			}
			plan = stored
			if mine {
				b.log.Info("backfill plan stored", "plan", plan.PlanID, "partitions", len(parts), "estimate", est, "classes", fmt.Sprint(classes))
			}
		}
	} else if _, err := b.provisionTarget(ctx); err != nil {
		return plan, nil, err
	}
	if plan.SpecVersion != b.cfg.Spec.Version {
		b.log.Warn("the spec changed since the backfill plan was made; the copy goes on with the new one",
			"plan_spec", plan.SpecVersion, "spec", b.cfg.Spec.Version)
	}
	var parts []catalog.BackfillPartition
	err := b.retry(ctx, "read partitions", func(ctx context.Context) (err error) {
		parts, err = b.cfg.Catalog.BackfillPartitions(ctx, b.cfg.Migration, plan.PlanID)
		return err
	})
	if err == nil && len(parts) != plan.Partitions {
		err = fmt.Errorf("backfill plan %s of %s names %d partitions, the catalog holds %d", plan.PlanID, b.cfg.Migration, plan.Partitions, len(parts))
	}
	return plan, parts, err
}

// checkSource refuses a source collection that does not exist.
func (b *Backfill) checkSource(ctx context.Context) error {
	p, ok := b.cfg.Old.(adapters.Provisioner)
	if !ok {
		return nil
	}
	exists, err := p.Exists(ctx)
	if err != nil {
		return fmt.Errorf("checking the source %s: %w", b.cfg.Spec.Source, err)
	}
	if !exists {
		return fmt.Errorf("%w: %s", ErrSourceMissing, b.cfg.Spec.Source)
	}
	return nil
}

// provisionTarget creates the target when absent, with the spec's indexes.
func (b *Backfill) provisionTarget(ctx context.Context) (bool, error) {
	p, ok := b.cfg.New.(adapters.Provisioner)
	if !ok {
		return false, nil
	}
	var pr adapters.Provisioning
	for _, ix := range b.cfg.Spec.Indexes {
		keys := bson.D{}
		for _, k := range ix.Keys {
			keys = append(keys, bson.E{Key: k.Field, Value: k.Order})
		}
		pr.Indexes = append(pr.Indexes, adapters.Index{Name: ix.Name, Keys: keys, Unique: ix.Unique, Sparse: ix.Sparse})
	}
	if collectionOf(b.cfg.New) == nil {
		kt, err := b.dynamoKeyType(ctx)
		if err != nil {
			return false, err
		}
		pr.KeyType = kt
	}
	created, err := p.Provision(ctx, pr)
	if err != nil {
		return false, fmt.Errorf("creating the target %s: %w", b.cfg.Spec.Target, err)
	}
	if created {
		b.log.Info("target created", "target", b.cfg.Spec.Target.String(), "indexes", len(pr.Indexes), "key_type", pr.KeyType)
	}
	return created, nil
}

// dynamoKeyType chooses a new table's key type from the source's most common key class:
// numbers N, binary B, anything else S (keys of other types are dead-lettered).
func (b *Backfill) dynamoKeyType(ctx context.Context) (string, error) {
	coll := collectionOf(b.cfg.Old)
	if coll == nil {
		return "S", nil
	}
	best, bestN := "string", int64(-1)
	for _, class := range []string{"string", "number", "binData"} {
		n, err := coll.CountDocuments(ctx, typeFilter(b.keyField(), class))
		if err != nil {
			return "", fmt.Errorf("choosing the target's key type: %w", err)
		}
		if n > bestN {
			best, bestN = class, n
		}
	}
	return map[string]string{"string": "S", "number": "N", "binData": "B"}[best], nil
}

// targetState reports whether the target exists and whether it holds no document.
func (b *Backfill) targetState(ctx context.Context) (exists, empty bool, err error) {
	exists = true
	if p, ok := b.cfg.New.(adapters.Provisioner); ok {
		if exists, err = p.Exists(ctx); err != nil || !exists {
			return exists, true, err
		}
	}
	errStop := errors.New("found one")
	err = b.cfg.New.Scan(ctx, adapters.Partition{}, adapters.ScanOptions{Batch: 1}, func(docs []bson.D) error {
		if len(docs) > 0 {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return true, false, nil
	}
	if err != nil {
		return exists, false, fmt.Errorf("checking that the target %s is empty: %w", b.cfg.Spec.Target, err)
	}
	return true, true, nil
}

// applyConfigRates records Config.Rate and BytesRate in the catalog when they differ from it.
func (b *Backfill) applyConfigRates(ctx context.Context) error {
	ctl := b.plan.Control
	if b.cfg.Rate > 0 && b.cfg.Rate != ctl.Rate {
		if err := SetRate(ctx, b.cfg.Catalog, b.cfg.Migration, b.cfg.Rate, b.cfg.Owner, "backfill run with --rate"); err != nil {
			return err
		}
	}
	if b.cfg.BytesRate > 0 && b.cfg.BytesRate != ctl.BytesRate {
		if err := SetBytesRate(ctx, b.cfg.Catalog, b.cfg.Migration, b.cfg.BytesRate, b.cfg.Owner, "backfill run with --bytes-rate"); err != nil {
			return err
		}
	}
	return nil
}
