package audit_test

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
)

// TestBenchChainedWrite (make bench): a record through the FileSink (the
// line built, hashed into the chain, written and fsync'd) against the same
// bytes appended and fsync'd directly, in interleaved rounds; medians.
func TestBenchChainedWrite(t *testing.T) {
	if os.Getenv("EXECGATE_BENCH") == "" {
		t.Skip("set EXECGATE_BENCH=1 to run")
	}
	dir := t.TempDir()
	sink, err := audit.NewFileSink(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	direct, err := os.OpenFile(filepath.Join(dir, "direct.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	rec := func() *audit.Record {
		return audit.New(audit.EventDecision, audit.PriWarning, "flow DENY git checkout flow/a11y (flow.toml:14: no)").
			Set(audit.FieldAgent, "flow").Set(audit.FieldDecision, "deny").Set(audit.FieldArgv, `["git","checkout","flow/a11y"]`).
			Set(audit.FieldRule, "flow.toml:14").Set(audit.FieldID, "0123456789abcdef")
	}
	line := append(audit.AppendJSON(nil, rec()), '\n')
	ops := []struct {
		name string
		op   func() error
	}{
		{"FileSink.Write (chained, fsync)", func() error { return sink.Write(rec()) }},
		{"direct append + fsync of the same line", func() error {
			if _, err := direct.Write(line); err != nil {
				return err
			}
			return direct.Sync()
		}},
	}
	const rounds, per = 9, 200
	times := make([][]time.Duration, len(ops))
	for round := 0; round < rounds; round++ {
		for k := range ops {
			i := (k + round) % len(ops)
			start := time.Now()
			for j := 0; j < per; j++ {
				if err := ops[i].op(); err != nil {
					t.Fatalf("%s: %v", ops[i].name, err)
				}
			}
			times[i] = append(times[i], time.Since(start)/per)
		}
	}
	med := make([]time.Duration, len(ops))
	for i := range ops {
		sort.Slice(times[i], func(a, b int) bool { return times[i][a] < times[i][b] })
		med[i] = times[i][len(times[i])/2]
		t.Logf("%-40s %9s per record", ops[i].name, med[i].Round(100*time.Nanosecond))
	}
	t.Logf("chained write / direct write: %.2fx", float64(med[0])/float64(med[1]))
	res, err := audit.VerifyFiles([]string{sink.Path()}, audit.VerifyOptions{})
	if err != nil || !res.Intact() {
		t.Fatalf("the benchmark's own chain: %v %v", err, res)
	}
}
