// Package embedmongo runs FerretDB (v1.24) inside the current process: the MongoDB that
// tandem's tests and its demo use, with nothing to install (SQLite backend). For benchmarks it
// also runs FerretDB on its PostgreSQL backend, against a private cluster that StartPostgreSQL
// makes with the machine's initdb and pg_ctl. It is not a production store: FerretDB lacks
// change streams, transactions, $lookup and text indexes.
package embedmongo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Options configure an embedded server. The zero value is valid.
type Options struct {
	// Dir holds the SQLite files. Optional; default: a new temporary folder removed by Stop
	// (or, should the process end without Stop, by a later Start: see tempDirPrefix). Not used
	// with PostgreSQLURL.
	Dir string
	// PostgreSQLURL, when set, makes FerretDB store its data in this PostgreSQL database (its
	// postgresql handler) instead of SQLite; see StartPostgreSQL for a private cluster.
	// Optional.
	PostgreSQLURL string
	// Addr is the TCP address to listen on. Optional; default "127.0.0.1:0" (any free port).
	Addr string
	// Logger receives FerretDB's own logs. Optional; default: discarded.
	Logger *slog.Logger
	// TLSCertFile and TLSKeyFile, when both set, make the server listen with TLS instead of
	// plain TCP. Optional.
	TLSCertFile, TLSKeyFile string
}

// Server is a running embedded FerretDB.
type Server struct {
	uri     string
	dir     string
	tempDir bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// Start starts FerretDB and returns once it accepts connections.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.PostgreSQLURL != "" {
		return start(ctx, &Server{}, opts, &ferretdb.Config{Handler: "postgresql", PostgreSQLURL: opts.PostgreSQLURL})
	}
	s := &Server{dir: opts.Dir}
	if s.dir == "" {
		d, err := newTempDir(tempDirPrefix)
		if err != nil {
			return nil, fmt.Errorf("embedded FerretDB: creating data folder: %w", err)
		}
		s.dir, s.tempDir = d, true
	} else if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded FerretDB: creating data folder %s: %w", s.dir, err)
	}
	abs, err := filepath.Abs(s.dir)
	if err != nil {
		return nil, fmt.Errorf("embedded FerretDB: data folder %s: %w", s.dir, err)
	}
	return start(ctx, s, opts, &ferretdb.Config{Handler: "sqlite", SQLiteURL: "file:" + abs + "/"})
}

// start runs FerretDB with cfg's handler, and opts' listener and logger, until it accepts
// connections.
func start(ctx context.Context, s *Server, opts Options, cfg *ferretdb.Config) (*Server, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = logger
	if opts.TLSCertFile != "" && opts.TLSKeyFile != "" {
		cfg.Listener.TLS = addr
		cfg.Listener.TLSCertFile = opts.TLSCertFile
		cfg.Listener.TLSKeyFile = opts.TLSKeyFile
	} else {
		cfg.Listener.TCP = addr
	}
	f, err := ferretdb.New(cfg)
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("embedded FerretDB: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		_ = f.Run(runCtx)
	}()
	// MongoDBURI is valid only once Run has opened the listener.
	uri := make(chan string, 1)
	go func() { uri <- f.MongoDBURI() }()
	select {
	case s.uri = <-uri:
		return s, nil
	case <-s.done:
		s.cleanup()
		return nil, errors.New("embedded FerretDB stopped while starting (is the address in use?)")
	case <-ctx.Done():
		s.Stop()
		return nil, fmt.Errorf("embedded FerretDB: waiting for the listener: %w", ctx.Err())
	case <-time.After(30 * time.Second):
		s.Stop()
		return nil, errors.New("embedded FerretDB: listener not ready after 30s")
	}
}

// URI returns the connection string, for example mongodb://127.0.0.1:40123/.
func (s *Server) URI() string { return s.uri }

// Dir returns the data folder ("" on PostgreSQL).
func (s *Server) Dir() string { return s.dir }

// Stop stops the server, closes its connections and waits for it; a temporary data folder is
// removed.
func (s *Server) Stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	s.cleanup()
}

// tempDirPrefix names the temporary data folders, in os.TempDir(). Each holds the file owner
// with the pid of the process that made it; Start removes those whose process is gone (a test
// binary that panicked, timed out or was killed never calls Stop).
const tempDirPrefix = "tandem-ferretdb-"

// newTempDir removes stale temporary data folders of prefix and makes a new one, owned by this
// process.
func newTempDir(prefix string) (string, error) {
	for _, d := range staleTempDirs(prefix) {
		_ = os.RemoveAll(d)
	}
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(d, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(d)
		return "", err
	}
	return d, nil
}

// staleTempDirs lists the temporary folders of prefix whose owner process is gone.
func staleTempDirs(prefix string) []string {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	var stale []string
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner"))
		if err != nil {
			continue // being made, or made before owner files: not known to be stale
		}
		if pid, err := strconv.Atoi(string(b)); err == nil && pid > 0 && processGone(pid) {
			stale = append(stale, d)
		}
	}
	return stale
}

// processGone reports whether no process has the id pid (where that cannot be told, as on
// Windows, it reports false).
func processGone(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	defer p.Release()
	return errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone)
}

func (s *Server) cleanup() {
	if s.tempDir {
		os.RemoveAll(s.dir)
	}
}
