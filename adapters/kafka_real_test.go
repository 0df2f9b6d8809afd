package adapters

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// The journal's tests run each against two Kafkas, as subtests named after them:
//
//   - kfake: franz-go's in-process cluster, new for each test, with as many brokers as the test
//     asks for; it is fast and can be stopped under a journal.
//   - kafka: a real Apache Kafka broker (KRaft, testenv.StartKafka from .cache/kafka/lib),
//     one per test binary, shared by the tests; without `make kafka` it skips, or fails under
//     `make test` (testenv.SkipOrFailKafka). It has one broker whatever the test asks for.
//
// Tests on the shared broker keep apart by name: each makes its own topic (testTopic) and its
// groups are named after that topic (testGroup).
var journalKafkas = []struct {
	name  string
	seeds func(t *testing.T, brokers int) []string
}{
	{"kfake", func(t *testing.T, brokers int) []string { return newKafka(t, brokers).ListenAddrs() }},
	{"kafka", func(t *testing.T, _ int) []string { return kafkaBroker(t).Brokers() }},
}

// onEachKafka runs test as a subtest against each of journalKafkas; brokers is the number of
// brokers of the kfake cluster.
func onEachKafka(t *testing.T, brokers int, test func(t *testing.T, seeds []string)) {
	t.Helper()
	for _, k := range journalKafkas {
		t.Run(k.name, func(t *testing.T) { test(t, k.seeds(t, brokers)) })
	}
}

var topicSeq atomic.Int64

// testTopic returns a topic name for the running test, unique in the test binary (so -count=N
// on the shared broker finds no topic left from an earlier run) and a valid Kafka topic name.
func testTopic(t *testing.T) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, t.Name())
	return fmt.Sprintf("journal-%s-%d", name, topicSeq.Add(1))
}

// testGroup returns the consumer group a test means by name: named after the journal's topic,
// so that tests sharing a broker never share a group.
func testGroup(j *KafkaJournal, name string) string { return j.Topic() + "." + name }
