package testenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrKafkaMissing means Java or the Kafka broker's jars are not installed: `make kafka` puts the
// jars into .cache/kafka/lib (Java 17 or newer must be on PATH, or in $JAVA_HOME).
var ErrKafkaMissing = errors.New("the Kafka broker is not installed (run `make kafka`)")

// kafkaStartTimeout bounds how long StartKafka waits for the broker to serve metadata. The
// broker takes ~4 s on two cores; the limit is for a machine under the load of `make test`.
const kafkaStartTimeout = 90 * time.Second

// kafkaJVMOptions keep the broker small and quick to start: it serves a few test topics, and
// the C1 compiler alone reaches a serving broker sooner than tiered compilation. Without perf
// data (-XX:-UsePerfData) the JVM writes no /tmp/hsperfdata_$USER/PID file.
var kafkaJVMOptions = []string{
	"-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
	"-Djava.awt.headless=true",
}

// Kafka is a running single-node Apache Kafka (KRaft: one process is broker and controller),
// with its data in a temporary folder that Stop removes.
type Kafka struct {
	addr     string // the PLAINTEXT listener, 127.0.0.1:PORT
	dir      string
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	out      *Output       // the JVM's own output; the broker logs to dir/server.log
	stopOnce sync.Once
	// saveArchive, when set, keeps the class archive the JVM writes as it exits (see
	// classArchive); Stop then ends the broker with SIGTERM instead of SIGKILL.
	saveArchive func()

	mu      sync.Mutex
	lastLog string // the log's tail, kept by Stop before it removes dir
}

// Brokers returns the seed brokers of the cluster, for kgo.SeedBrokers.
func (k *Kafka) Brokers() []string { return []string{k.addr} }

// PID returns the broker's process id.
func (k *Kafka) PID() int { return k.cmd.Process.Pid }

// KafkaLib returns the folder of the broker's jars: $TANDEM_KAFKA_LIB, or else .cache/kafka/lib
// in the folder of the go.mod found by walking up from the working directory. It does not check
// that the folder exists.
func KafkaLib() (string, error) {
	if d := os.Getenv("TANDEM_KAFKA_LIB"); d != "" {
		return d, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("kafka: %v: %w", err, ErrKafkaMissing)
	}
	return filepath.Join(root, ".cache", "kafka", "lib"), nil
}

// repoRoot returns the folder of the go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// java returns $JAVA_HOME/bin/java if there is one, else java from PATH.
func java() (string, error) {
	if home := os.Getenv("JAVA_HOME"); home != "" {
		if p := filepath.Join(home, "bin", "java"); fileExists(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("kafka: java: %v: %w", err, ErrKafkaMissing)
	}
	return p, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// StartKafka formats a KRaft log folder in a new temporary folder and starts a broker that is
// its own controller, `java -cp LIB/* kafka.Kafka server.properties`, on two free loopback ports
// (clients use Brokers; the controller listener is internal). It returns once a client sees the
// broker in a metadata response and its group coordinator answers, within 90 s. The caller must Stop it. Java or jars that are not
// installed give an error wrapping ErrKafkaMissing.
//
// The broker is configured for tests: one replica for every internal topic, no delay before the
// first rebalance of a group, topics created automatically with one partition, a 256 MiB heap,
// and warnings only in its log (see Log).
func StartKafka(ctx context.Context) (*Kafka, error) {
	lib, err := KafkaLib()
	if err != nil {
		return nil, err
	}
	if jars, _ := filepath.Glob(filepath.Join(lib, "kafka_2.13-*.jar")); len(jars) == 0 {
		return nil, fmt.Errorf("kafka: no kafka_2.13 jar in %s: %w", lib, ErrKafkaMissing)
	}
	javaBin, err := java()
	if err != nil {
		return nil, err
	}
	// A port freed here could be taken again before the broker binds it: try a few.
	var lastErr error
	for range 3 {
		k, err := startKafkaOnce(ctx, javaBin, lib)
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, errPortTaken) || ctx.Err() != nil {
			return nil, err
		}
		lastErr = err
	}
	return nil, lastErr
}

// errPortTaken means the broker could not bind one of its ports.
var errPortTaken = errors.New("address already in use")

func startKafkaOnce(ctx context.Context, javaBin, lib string) (k *Kafka, err error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("kafka: choosing a port: %w", err)
	}
	controllerPort, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("kafka: choosing a port: %w", err)
	}
	if controllerPort == port {
		return nil, fmt.Errorf("kafka: port %d chosen twice: %w", port, errPortTaken)
	}
	removeStaleKafkaDirs()
	dir, err := os.MkdirTemp("", kafkaDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	// Until the broker's pid replaces it, the folder belongs to this process: should it be
	// killed while formatting, the next start finds the folder stale.
	pidFile := filepath.Join(dir, "pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	props := filepath.Join(dir, "server.properties")
	if err := os.WriteFile(props, []byte(kafkaServerProperties(dir, port, controllerPort)), 0o644); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	// The JVM's temporary files — the native libraries that snappy-java, zstd-jni and lz4-java
	// unpack when a compressed batch arrives — go into the broker's folder, which Stop (or the
	// next start, after a killed test binary: removeStaleKafkaDirs) removes. By default they go
	// to /tmp: java.io.tmpdir ignores $TMPDIR, and a killed JVM never deletes them.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	log4j := filepath.Join(dir, "log4j2.properties")
	if err := os.WriteFile(log4j, []byte(kafkaLog4j(filepath.Join(dir, "server.log"))), 0o644); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	args := append(slices.Clone(kafkaJVMOptions), "-Dlog4j2.configurationFile="+log4j, "-Dkafka.logs.dir="+dir)
	args = append(args, kafkaTempOptions(tmp)...)
	args = append(args, "-cp", filepath.Join(lib, "*"))

	// Format the log folder: KRaft needs a cluster id and the bootstrap metadata before the first
	// start. With static voters (controller.quorum.voters) no --standalone is needed.
	cds, saveFormatArchive := classArchive(lib, javaBin, "format")
	format := exec.CommandContext(ctx, javaBin, append(append(slices.Clone(args), cds...), "kafka.tools.StorageTool", "format",
		"--cluster-id="+newClusterID(), "--config", props, "--ignore-formatted")...)
	format.SysProcAttr = sysProcAttr()
	if out, err := format.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("kafka: formatting %s: %w", dir, ctx.Err())
		}
		return nil, fmt.Errorf("kafka: formatting %s: %v: %s", dir, err, lastLine(string(out)))
	}
	if saveFormatArchive != nil {
		saveFormatArchive()
	}

	k = &Kafka{
		addr: "127.0.0.1:" + strconv.Itoa(port),
		dir:  dir,
		done: make(chan struct{}),
		out:  &Output{Max: 64 << 10},
	}
	cds, k.saveArchive = classArchive(lib, javaBin, "broker")
	// Not exec.CommandContext: the broker outlives ctx, which bounds only the start.
	k.cmd = exec.Command(javaBin, append(append(args, cds...), "kafka.Kafka", props)...)
	k.cmd.Dir = dir
	k.cmd.Stdout = k.out
	k.cmd.Stderr = k.out
	k.cmd.SysProcAttr = sysProcAttr()
	if err := k.cmd.Start(); err != nil {
		return nil, fmt.Errorf("kafka: starting %s: %v: %w", javaBin, err, ErrKafkaMissing)
	}
	go func() {
		_ = k.cmd.Wait()
		close(k.done)
	}()
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(k.PID())), 0o644)
	if err := k.waitReady(ctx); err != nil {
		k.Stop()
		return nil, err
	}
	return k, nil
}

// kafkaTempOptions point the JVM's temporary files into dir: java.io.tmpdir, and the folders
// into which the compression libraries of the broker unpack their native code (each defaults to
// java.io.tmpdir, and snappy-java and zstd-jni have their own property besides).
func kafkaTempOptions(dir string) []string {
	return []string{"-Djava.io.tmpdir=" + dir, "-Dorg.xerial.snappy.tempdir=" + dir, "-DZstdTempFolder=" + dir}
}

// kafkaDirPrefix names the temporary folders of brokers, in os.TempDir().
const kafkaDirPrefix = "tandem-kafka-"

// removeStaleKafkaDirs removes the folders of brokers whose process is gone without a Stop (the
// test binary was killed, and the kernel killed its broker): those whose pid file names no
// process. The pid file names the test binary until the broker starts, the broker after. A
// folder without a pid file is one being created, and is left alone.
func removeStaleKafkaDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), kafkaDirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(string(b)); err == nil && pid > 0 && processGone(pid) {
			_ = os.RemoveAll(d)
		}
	}
}

func processGone(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	defer p.Release()
	return errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone)
}

// waitReady polls the broker until it is ready, the process exits, ctx ends or
// kafkaStartTimeout passes.
func (k *Kafka) waitReady(ctx context.Context) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.RetryTimeout(time.Second))
	if err != nil {
		return fmt.Errorf("kafka: client of %s: %w", k.addr, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.NewTimer(kafkaStartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-k.done:
			log := k.Log()
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("kafka exited while starting: %w", errPortTaken)
			}
			return fmt.Errorf("kafka exited while starting (%s): %s", k.cmd.ProcessState, lastLine(log))
		case <-ctx.Done():
			return fmt.Errorf("kafka: waiting for %s: %w", k.addr, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("kafka: no broker in the metadata of %s after %s: %s", k.addr, kafkaStartTimeout, lastLine(k.Log()))
		case <-tick.C:
			if k.ready(ctx, adm) {
				return nil
			}
		}
	}
}

// ready reports whether the broker lists itself in its metadata and its group coordinator
// answers. A new cluster creates the offsets topic (__consumer_offsets) on the first group
// request and answers COORDINATOR_NOT_AVAILABLE until it is loaded; tests should meet a cluster
// that has served groups before, as they almost always will outside tests.
func (k *Kafka) ready(ctx context.Context, adm *kadm.Client) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	m, err := adm.BrokerMetadata(ctx)
	if err != nil || len(m.Brokers) == 0 {
		return false
	}
	_, err = adm.FetchOffsets(ctx, "tandem-testenv-ready")
	return err == nil || errors.Is(err, kerr.GroupIDNotFound)
}

// Stop kills the broker by its PID, waits for it to exit and removes its folder. It may be
// called more than once. The first broker started from a set of jars is stopped with SIGTERM
// instead, so that the JVM writes its class archive as it exits (a few seconds, once).
func (k *Kafka) Stop() {
	k.stopOnce.Do(func() {
		if k.saveArchive != nil && k.cmd.Process.Signal(syscall.SIGTERM) == nil {
			select {
			case <-k.done:
				k.saveArchive()
			case <-time.After(30 * time.Second):
			}
		}
		_ = k.cmd.Process.Kill()
		<-k.done
		log := k.Log()
		k.mu.Lock()
		k.lastLog = log
		k.mu.Unlock()
		_ = os.RemoveAll(k.dir)
	})
}

// Log returns the last 64 KiB of the broker's log (warnings and errors, and its start) and of
// the JVM's own output, for failing tests.
func (k *Kafka) Log() string {
	k.mu.Lock()
	last := k.lastLog
	k.mu.Unlock()
	if last != "" {
		return last
	}
	var b strings.Builder
	if f, err := os.Open(filepath.Join(k.dir, "server.log")); err == nil {
		if st, err := f.Stat(); err == nil && st.Size() > 64<<10 {
			_, _ = f.Seek(-64<<10, io.SeekEnd)
		}
		_, _ = io.Copy(&b, f)
		f.Close()
	}
	b.WriteString(k.out.String())
	return b.String()
}

// classArchive returns the JVM options that start a java command of the given kind ("format",
// "broker") from a class-data sharing archive of the classes it loaded on an earlier run, which
// halves the broker's start-up (~4 s to ~2 s on two cores). The archives live in the folder
// cds beside lib, named by a hash of the JVM and the jars, since the JVM ignores an archive
// made by another JVM or class path. When there is none yet, the options make the JVM write one
// as it exits, and save, not nil, moves it into place: call it once the command has exited
// normally. Without a writable folder there are no options and no archive.
func classArchive(lib, javaBin, kind string) (opts []string, save func()) {
	h := sha256.New()
	for _, p := range append([]string{javaBin}, mustGlob(filepath.Join(lib, "*.jar"))...) {
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil
		}
		fmt.Fprintf(h, "%s %d %d\n", p, st.Size(), st.ModTime().UnixNano())
	}
	dir := filepath.Join(filepath.Dir(lib), "cds")
	path := filepath.Join(dir, fmt.Sprintf("%s-%x.jsa", kind, h.Sum(nil)[:8]))
	if fileExists(path) {
		return []string{"-XX:SharedArchiveFile=" + path}, nil
	}
	if os.MkdirAll(dir, 0o755) != nil {
		return nil, nil
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	return []string{"-XX:ArchiveClassesAtExit=" + tmp}, func() {
		if st, err := os.Stat(tmp); err == nil && st.Size() > 0 {
			_ = os.Rename(tmp, path)
		}
		_ = os.Remove(tmp)
	}
}

func mustGlob(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	return m
}

// kafkaServerProperties is the configuration of a combined broker and controller, node 1.
func kafkaServerProperties(dir string, port, controllerPort int) string {
	return fmt.Sprintf(`process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:%[3]d
listeners=PLAINTEXT://127.0.0.1:%[2]d,CONTROLLER://127.0.0.1:%[3]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[2]d
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=%[1]s
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
`, filepath.Join(dir, "data"), port, controllerPort)
}

// kafkaLog4j is a log4j2 configuration that writes warnings, errors and the start-up line to
// file, and nothing to the console.
func kafkaLog4j(file string) string {
	return fmt.Sprintf(`status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = %s
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%%d] %%p %%m (%%c)%%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
`, file)
}

// newClusterID returns a random Kafka cluster id: 16 bytes in URL-safe base64 without padding,
// as `kafka-storage random-uuid` prints.
func newClusterID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// KafkaRequired reports whether tests must fail, not skip, without the Kafka broker:
// TANDEM_REQUIRE_KAFKA=1 or TANDEM_REQUIRE_CLIENTS=1 (which `make test` sets).
func KafkaRequired() bool {
	return required("TANDEM_REQUIRE_KAFKA")
}

// SkipOrFailKafka ends a test that could not get a Kafka broker: with t.Skip when it is not
// installed and not required, with t.Fatal otherwise. err is StartKafka's error, nil does
// nothing.
func SkipOrFailKafka(tb testing.TB, err error) {
	tb.Helper()
	skipOrFail(tb, err, ErrKafkaMissing, "TANDEM_REQUIRE_KAFKA", "kafka", "Apache Kafka tests")
}

// StartKafkaT starts a broker for one test and stops it when the test ends; see
// SkipOrFailKafka. A test binary that needs a broker in several tests should start one and
// share it: each start costs seconds.
func StartKafkaT(tb testing.TB) *Kafka {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kafkaStartTimeout+30*time.Second)
	defer cancel()
	k, err := StartKafka(ctx)
	SkipOrFailKafka(tb, err)
	tb.Cleanup(k.Stop)
	return k
}
