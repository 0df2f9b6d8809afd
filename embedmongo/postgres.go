package embedmongo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PostgreSQL is a private PostgreSQL cluster for FerretDB's postgresql handler
// (Options.PostgreSQLURL): initdb into a folder of its own, the server started by pg_ctl on
// 127.0.0.1 and a free port, trusting local connections. It is a throwaway store for
// benchmarks: fsync and synchronous commit are off, so a crash of the machine loses it.
type PostgreSQL struct {
	dir  string // the folder: owner, data/, postgres.log
	bin  string // the folder of initdb and pg_ctl
	url  string
	cred *syscall.Credential // the user initdb and postgres run as, when this process is root
}

// PostgreSQLOptions configure StartPostgreSQL. The zero value is valid.
type PostgreSQLOptions struct {
	// BinDir is the folder of initdb and pg_ctl. Optional; default: the folder of pg_ctl on
	// PATH, else the newest /usr/lib/postgresql/*/bin (Debian's layout).
	BinDir string
}

// pgTempDirPrefix names the clusters' folders in os.TempDir(); like the SQLite folders they
// hold an owner file, and a cluster whose owner is gone is stopped and removed by a later
// StartPostgreSQL.
const pgTempDirPrefix = "tandem-pg-"

// StartPostgreSQL creates a cluster in a new temporary folder and starts it. It fails, naming
// what is missing, when initdb or pg_ctl cannot be found or run. As root it runs them as the
// user postgres (or nobody), since PostgreSQL refuses to run as root.
func StartPostgreSQL(ctx context.Context, opts PostgreSQLOptions) (*PostgreSQL, error) {
	bin, err := pgBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	removeStalePostgreSQL(bin, cred)
	dir, err := newTempDir(pgTempDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL: creating the cluster folder: %w", err)
	}
	p := &PostgreSQL{dir: dir, bin: bin, cred: cred}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			p.remove()
			return nil, fmt.Errorf("PostgreSQL: giving %s to uid %d: %w", dir, cred.Uid, err)
		}
	}
	if out, err := p.run(ctx, "initdb", "-D", p.dataDir(), "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		p.remove()
		return nil, fmt.Errorf("PostgreSQL: initdb -D %s: %w\n%s", p.dataDir(), err, out)
	}
	// A port found free can be taken before postgres binds it: try a few.
	var startErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			p.remove()
			return nil, fmt.Errorf("PostgreSQL: finding a free port: %w", err)
		}
		if startErr = p.start(ctx, port); startErr == nil {
			p.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres", port)
			return p, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	p.remove()
	return nil, startErr
}

// URL is the cluster's connection string for Options.PostgreSQLURL, for example
// postgres://postgres@127.0.0.1:40123/postgres.
func (p *PostgreSQL) URL() string { return p.url }

// Dir is the cluster's folder.
func (p *PostgreSQL) Dir() string { return p.dir }

// Stop stops the server (pg_ctl stop -m fast) and removes its folder.
func (p *PostgreSQL) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := p.run(ctx, "pg_ctl", "-D", p.dataDir(), "-m", "fast", "-w", "stop")
	p.remove()
	if err != nil {
		return fmt.Errorf("PostgreSQL: pg_ctl stop -D %s: %w\n%s", p.dataDir(), err, out)
	}
	return nil
}

func (p *PostgreSQL) dataDir() string { return filepath.Join(p.dir, "data") }

func (p *PostgreSQL) remove() { _ = os.RemoveAll(p.dir) }

// start runs pg_ctl start on port and waits until the server accepts connections.
func (p *PostgreSQL) start(ctx context.Context, port int) error {
	// Settings for a throwaway store: no fsync, no waiting for the WAL on commit.
	settings := strings.Join([]string{
		"-c listen_addresses=127.0.0.1", "-p " + strconv.Itoa(port),
		"-c unix_socket_directories=" + p.dir,
		"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
	}, " ")
	log := filepath.Join(p.dir, "postgres.log")
	out, err := p.run(ctx, "pg_ctl", "-D", p.dataDir(), "-l", log, "-o", settings, "-w", "-t", "60", "start")
	if err != nil {
		tail, _ := os.ReadFile(log)
		return fmt.Errorf("PostgreSQL: pg_ctl start -D %s on port %d: %w\n%s%s", p.dataDir(), port, err, out, lastLines(tail, 10))
	}
	return nil
}

// run runs one of the cluster's programs, as the cluster's user, and returns its output.
func (p *PostgreSQL) run(ctx context.Context, prog string, args ...string) ([]byte, error) {
	return runAs(ctx, p.cred, filepath.Join(p.bin, prog), args...)
}

func runAs(ctx context.Context, cred *syscall.Credential, path string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = os.TempDir() // a folder the cluster's user can enter
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return cmd.CombinedOutput()
}

// pgBinDir finds the folder of initdb and pg_ctl.
func pgBinDir(dir string) (string, error) {
	has := func(d string) bool {
		for _, prog := range []string{"initdb", "pg_ctl"} {
			if fi, err := os.Stat(filepath.Join(d, prog)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if dir != "" {
		if !has(dir) {
			return "", fmt.Errorf("PostgreSQL: no initdb and pg_ctl in %s", dir)
		}
		return dir, nil
	}
	if path, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(path); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if has(filepath.Dir(path)) {
			return filepath.Dir(path), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return pgVersion(b) - pgVersion(a) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL: initdb and pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin (install PostgreSQL, e.g. apt-get install postgresql)")
}

// pgVersion is the major version in a /usr/lib/postgresql/N/bin path, 0 if none.
func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// pgCredential is the user to run PostgreSQL as: nil (this process's) unless this process is
// root, then postgres or, without such a user, nobody.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 == nil && err2 == nil {
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
		}
	}
	return nil, errors.New("PostgreSQL: running as root, and there is no user postgres or nobody to run initdb and postgres as")
}

// removeStalePostgreSQL stops and removes the clusters whose owner process is gone.
func removeStalePostgreSQL(bin string, cred *syscall.Credential) {
	for _, d := range staleTempDirs(pgTempDirPrefix) {
		data := filepath.Join(d, "data")
		if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, _ = runAs(ctx, cred, filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
			cancel()
		}
		_ = os.RemoveAll(d)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
