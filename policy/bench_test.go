package policy

import (
	"slices"
	"testing"
	"time"

	"github.com/execgate/execgate/shellparse"
)

// BenchmarkDecide decides every corpus line against examples/flow.toml with
// the real program lookup, and reports the p50 and p99 time per decision.
func BenchmarkDecide(b *testing.B) {
	flow := load(b, "flow")
	c := corpus(b)
	// A Resolver held across decisions, as the daemon's registry holds one.
	opts := Options{Dir: "/srv/fibreflow", LookPath: new(shellparse.Resolver).LookPath}
	for _, s := range c { // warm the lookup cache as a running daemon has it
		Decide(flow, s, opts)
	}
	var ds []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := c[i%len(c)]
		t := time.Now()
		Decide(flow, s, opts)
		ds = append(ds, time.Since(t))
	}
	b.StopTimer()
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds()), "p99-ns")
}

func FuzzDecide(f *testing.F) {
	flow := load(f, "flow")
	for _, s := range corpus(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := Decide(flow, s, Options{Dir: "/srv/fibreflow", LookPath: look})
		if r.Decisive == nil {
			t.Fatalf("no decisive verdict for %q", s)
		}
		if r.Err != nil && r.Decision != "deny" {
			t.Fatalf("analysis error must deny: %q -> %s", s, r.Decision)
		}
	})
}
