package cdc_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tandemdb/tandem/testenv"
)

// The journal worker's tests run each against two Kafkas, as subtests named after them: kfake
// (franz-go's in-process cluster, new for each test) and a real Apache Kafka broker (KRaft,
// testenv.StartKafka), one per test binary, which skips without `make kafka` and fails without
// it under `make test` (testenv.SkipOrFailKafka). Fixtures keep apart on the shared broker by
// topic (cdc-test-N).
var journalKafkas = []struct {
	name  string
	seeds func(t *testing.T) []string
}{
	{"kfake", func(t *testing.T) []string {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		require.NoError(t, err)
		t.Cleanup(c.Close)
		return c.ListenAddrs()
	}},
	{"kafka", func(t *testing.T) []string { return kafkaBroker(t).Brokers() }},
}

// onEachKafka runs test as a subtest against each of journalKafkas.
func onEachKafka(t *testing.T, test func(t *testing.T, seeds []string)) {
	t.Helper()
	for _, k := range journalKafkas {
		t.Run(k.name, func(t *testing.T) { test(t, k.seeds(t)) })
	}
}

// The binary's Apache Kafka broker, started on first use and stopped by TestMain (stopKafka).
var (
	kafkaOnce sync.Once
	kafka     *testenv.Kafka
	kafkaErr  error
)

func kafkaBroker(tb testing.TB) *testenv.Kafka {
	tb.Helper()
	kafkaOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		start := time.Now()
		if kafka, kafkaErr = testenv.StartKafka(ctx); kafkaErr == nil {
			tb.Logf("Apache Kafka broker at %s ready after %s", kafka.Brokers()[0], time.Since(start).Round(time.Millisecond))
		}
	})
	testenv.SkipOrFailKafka(tb, kafkaErr)
	return kafka
}

func stopKafka() {
	if kafka != nil {
		kafka.Stop()
	}
}
