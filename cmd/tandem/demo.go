package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/embedmongo"
)

func newDemoCmd(g *globalOptions) *cobra.Command {
	var (
		o    proxyOptions
		dir  string
		seed int
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the proxy in front of an embedded MongoDB (FerretDB): nothing to install",
		Long: `Run an embedded MongoDB-compatible store (FerretDB on SQLite, kept in --data), the proxy in
front of it and the admin listener. It prints the connection string for applications and stops
cleanly on Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			if seed < 0 {
				return usagef("--seed %d: must be 0 or more", seed)
			}
			if dir == "" {
				return usagef("--data must name a folder")
			}
			ctx := cmd.Context()
			store, err := embedmongo.Start(ctx, embedmongo.Options{Dir: dir})
			if err != nil {
				return err
			}
			defer store.Stop()
			if seed > 0 {
				n, err := seedUsers(ctx, store.URI(), seed)
				if err != nil {
					return fmt.Errorf("seeding demo.users: %w", err)
				}
				log.Info("seeded demo.users", "inserted", n, "requested", seed)
			}
			s, err := startStack(o, store.URI(), log)
			if err != nil {
				return err
			}
			printDemoBanner(cmd.OutOrStdout(), s, store)
			return s.wait(ctx)
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&dir, "data", "tandem-demo-data", "folder for the embedded store's files (kept between runs)")
	cmd.Flags().IntVar(&seed, "seed", 0, "insert this many sample documents into demo.users (existing ones are kept)")
	return cmd
}

func printDemoBanner(w io.Writer, s *stack, store *embedmongo.Server) {
	fmt.Fprintf(w, `
tandem demo is running.

  applications connect to   %s
  embedded store (direct)   %s   (data in %s)
`, s.proxyURI(), store.URI(), store.Dir())
	if u := s.adminURL(); u != "" {
		fmt.Fprintf(w, "  admin                     %s/metrics  %s/healthz\n", u, u)
	}
	fmt.Fprintf(w, "\nTry: mongosh %s --eval 'db.getSiblingDB(\"demo\").users.findOne()'\nPress Ctrl-C to stop.\n\n", s.proxyURI())
}

// seedUsers inserts n sample users with _ids user-000001… into demo.users directly in the
// store. Users that already exist are kept as they are; it returns how many were inserted.
func seedUsers(ctx context.Context, uri string, n int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return 0, err
	}
	defer client.Disconnect(context.Background())
	coll := client.Database("demo").Collection("users")
	inserted := 0
	const batch = 1000
	for start := 0; start < n; start += batch {
		docs := make([]any, 0, batch)
		for i := start; i < min(start+batch, n); i++ {
			docs = append(docs, bson.D{
				{Key: "_id", Value: fmt.Sprintf("user-%06d", i+1)},
				{Key: "name", Value: fmt.Sprintf("User %d", i+1)},
				{Key: "email", Value: fmt.Sprintf("user%d@example.com", i+1)},
				{Key: "age", Value: int32(18 + i%60)},
				{Key: "created", Value: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)},
			})
		}
		res, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		if res != nil {
			inserted += len(res.InsertedIDs)
		}
		var bwe mongo.BulkWriteException
		if err != nil && !(errors.As(err, &bwe) && onlyDuplicateKeys(bwe)) {
			return inserted, err
		}
	}
	return inserted, nil
}

func onlyDuplicateKeys(e mongo.BulkWriteException) bool {
	if e.WriteConcernError != nil {
		return false
	}
	for _, we := range e.WriteErrors {
		if we.Code != 11000 {
			return false
		}
	}
	return true
}
