package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/examples"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/transform"
)

func newDemoCmd(g *globalOptions) *cobra.Command {
	var (
		o           proxyOptions
		mo          migrationOptions
		dir         string
		seed        int
		storeListen string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the proxy in front of an embedded MongoDB (FerretDB): nothing to install",
		Long: `Run an embedded MongoDB-compatible store (FerretDB on SQLite, kept in --data), the proxy in
front of it, an in-process Kafka for the journal, and the admin listener, with the sample
migration demo.users → demo.users_v2 (examples/users-v2.yaml) in phase shadow. The sample
users (--seed) are written straight into demo.users on the first run, and the backfill copies
them into demo.users_v2 while the proxy runs; what is written through the proxy appears there,
transformed, too. It prints the connection strings and
the admin URL, and stops cleanly on Ctrl-C.`,
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
			if err := checkHostPort("--store-listen", storeListen); err != nil {
				return err
			}
			if st, err := os.Stat(dir); err == nil && !st.IsDir() {
				return usagef("--data %s is a file: it must name a folder", dir)
			}
			if mo.tokenFile == "" && os.Getenv("TANDEM_ADMIN_TOKEN") == "" {
				if mo.tokenFile, err = demoToken(dir); err != nil {
					return err
				}
			}
			if err := mo.validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			// FerretDB's own bind error is a stack of its internals: say it in one line first.
			ln, err := listen("--store-listen", storeListen)
			if err != nil {
				return err
			}
			_ = ln.Close()
			store, err := embedmongo.Start(ctx, embedmongo.Options{Dir: dir, Addr: storeListen})
			if err != nil {
				return fmt.Errorf("the demo's store (--store-listen %s, --data %s): %w", storeListen, dir, err)
			}
			defer store.Stop()
			mo.rewrite = func(spec *transform.Spec) {
				// The example names a MongoDB on 27017; the demo's is the embedded one
				// (--target-uri, applied after this, may point the target elsewhere).
				spec.Source.URI, spec.Target.URI = store.URI(), store.URI()
			}
			// The first run writes the sample users straight into demo.users, as history the
			// backfill copies while the proxy runs; a later run adds any new ones through the
			// proxy, whose shadow phase converges them.
			direct := false
			if seed > 0 {
				if direct, err = emptyUsers(ctx, store.URI()); err != nil {
					return fmt.Errorf("the demo's store: %w", err)
				}
				if direct {
					n, err := seedUsers(ctx, store.URI(), seed)
					if err != nil {
						return fmt.Errorf("seeding demo.users: %w", err)
					}
					log.Info("seeded demo.users directly: the backfill copies them", "inserted", n)
				}
			}
			s, err := startStack(ctx, o, &mo, store.URI(), log)
			if err != nil {
				return err
			}
			if err := startShadowPhase(ctx, s.mig); err != nil {
				return errors.Join(err, s.shutdown())
			}
			if seed > 0 && !direct {
				n, err := seedUsers(ctx, s.proxyURI(), seed)
				if err != nil {
					return errors.Join(fmt.Errorf("seeding demo.users: %w", err), s.shutdown())
				}
				log.Info("seeded demo.users through the proxy", "inserted", n, "requested", seed)
			}
			v, err := s.mig.manager.Get(ctx, demoMigration)
			if err != nil {
				return errors.Join(fmt.Errorf("reading the phase of %s: %w", demoMigration, err), s.shutdown())
			}
			printDemoBanner(cmd.OutOrStdout(), s, store, mo.tokenFile, v.Phase)
			return s.wait(ctx)
		},
	}
	o.addFlags(cmd)
	mo.addFlags(cmd, true)
	mo.journalEmbedded = true
	mo.backfill = &backfillOptions{workers: 2, batch: 500, partitions: 4, lease: 30 * time.Second}
	mo.cdc = cdcAuto // the embedded FerretDB has no change streams: a warning, and the journal carries the writes
	mo.specData = map[string][]byte{"examples/users-v2.yaml": examples.UsersV2}
	cmd.Flags().StringVar(&dir, "data", "tandem-demo-data", "folder for the embedded store's files (kept between runs)")
	cmd.Flags().IntVar(&seed, "seed", 0, "insert this many sample documents into demo.users (existing ones are kept)")
	cmd.Flags().StringVar(&storeListen, "store-listen", "127.0.0.1:27019", "address of the embedded store (host:port; port 0: any free port)")
	return cmd
}

// demoMigration is the name of the demo's migration (examples/users-v2.yaml).
const demoMigration = "users-v2"

func printDemoBanner(w io.Writer, s *stack, store *embedmongo.Server, tokenFile string, phase string) {
	fmt.Fprintf(w, `
tandem demo is running: migration users-v2 (demo.users → demo.users_v2) in phase %s.
`, phase)
	if u := s.adminURL(); u != "" {
		if link, err := s.mig.api.LoginLink(u); err == nil {
			fmt.Fprintf(w, `
  open the dashboard        %s
                            (a one-time sign-in link, good for 15 minutes; later, sign in at %s/login with the admin token)
`, link, u)
		}
	}
	fmt.Fprintf(w, `
  applications connect to   %s
  embedded store (direct)   %s   (data in %s)
`, s.proxyURI(), store.URI(), store.Dir())
	if u := s.adminURL(); u != "" {
		fmt.Fprintf(w, "  admin                     %s   (the dashboard at /, /metrics, /healthz, /v1/migrations/users-v2/overview)\n", u)
		if tokenFile != "" {
			fmt.Fprintf(w, "  admin token               in %s\n", tokenFile)
		}
		fmt.Fprintf(w, "\nThen: export TANDEM_ADMIN_URL=%s TANDEM_ADMIN_TOKEN=$(cat %s); tandem flags get users-v2\n", u, tokenFile)
	}
	fmt.Fprintf(w, "The backfill copies demo.users into demo.users_v2; its progress: tandem backfill status users-v2\n")
	fmt.Fprintf(w, "The whole migration on one screen, as the dashboard shows it: tandem status users-v2 --watch\n")
	fmt.Fprintf(w, "Write through the proxy: mongosh %s --eval 'db.getSiblingDB(\"demo\").users.insertOne({_id: \"u1\", name: \"Ada\", email: \"ada@example.com\", age: 36, created: new Date()})'\n", s.proxyURI())
	fmt.Fprintf(w, "Watch the new collection directly: mongosh %s --eval 'db.getSiblingDB(\"demo\").users_v2.find()'\nPress Ctrl-C to stop.\n\n", store.URI())
}

// startShadowPhase moves the demo migration from off to shadow (a restarted demo keeps the
// phase it had).
func startShadowPhase(ctx context.Context, mig *migrationStack) error {
	v, err := mig.manager.Get(ctx, demoMigration)
	if err != nil {
		return err
	}
	if v.Phase == flags.PhaseOff {
		if _, err = mig.manager.Advance(ctx, demoMigration, flags.PhaseShadow, "tandem demo", "the demo starts in phase shadow"); err != nil {
			return err
		}
	}
	// Let the proxy's flag provider see the phase before the seed writes go through it.
	deadline := time.Now().Add(10 * time.Second)
	for mig.evaluator.Evaluate(ctx, flags.Context{Migration: demoMigration, Database: "demo", Collection: "users"}).Phase == flags.PhaseOff {
		if time.Now().After(deadline) {
			return errors.New("the proxy did not see phase shadow within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// demoToken returns the demo's admin token file in dir, creating it with a random token.
func demoToken(dir string) (string, error) {
	path := filepath.Join(dir, "admin-token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating --data %s: %w", dir, err)
	}
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(buf)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing the demo's admin token: %w", err)
	}
	return path, nil
}

// emptyUsers reports whether demo.users holds no document.
func emptyUsers(ctx context.Context, uri string) (bool, error) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return false, err
	}
	defer client.Disconnect(context.Background())
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := client.Database("demo").Collection("users").EstimatedDocumentCount(ctx)
	return n == 0, err
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
