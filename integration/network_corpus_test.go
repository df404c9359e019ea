package integration

// The network bypass corpus: testdata/network.txtar, every way we know for
// a run to reach a destination its profile does not allow (see the
// archive's comment for the format and the placeholders). One daemon runs
// every case; each case has forbidden servers of its own, so that cases
// run in parallel and each one's contacts are its own:
//
//   - F: TCP on the gateway's 127.0.0.1:FPORT, [::1]:FPORT, FIP:FPORT and
//     FIP:APORT (FIP = 127.0.1.N): what denied.test, other.test,
//     allowed.test on another port, localhost, 0.0.0.0 and loopback
//     literals reach without execgate;
//   - H: TCP on every address of the test host at HPORT (HIP =
//     10.77.0.(100+N), 10.77.0.2, metadata, the unmapped synthetic
//     addresses, fd77::2);
//   - HA: the test host's APORT, counted for HIP only (the allowed port on
//     a forbidden address: /etc/hosts edits, --resolve, --connect-to);
//   - UDP on the gateway's 127.0.0.1:UPORT and the test host's HUPORT;
//   - DNS: any query for a name holding TOKEN (nN x) that reaches the
//     test's DNS server (exfiltration through a forwarding resolver, or a
//     daemon resolving a name it should have refused by name);
//   - ICMP: echo requests the test host receives (cases tagged icmp run
//     alone).
//
// For each case the runner (1) runs the script WITHOUT execgate, as the
// agent uid in the gateway (open proxy behind the proxy variables), and
// requires a contact: the case is live; (2) runs it through egsh and
// requires no contact at all and a non-zero exit. Controls (allow) must
// succeed both ways with their output.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/txtar"

	"github.com/execgate/execgate/audit"
)

const netCorpusProfile = `uid = 65534
security = "full"
workdirs = ["WORK"]

[network]
mode = "proxy"

[[connect]]
match = "allowed.test:APORT"
action = "allow"
reason = "bypass corpus: the one allowed destination"

[[connect]]
match = "{*.private.test,*.nip.test,metadata.test}:*"
action = "allow"
reason = "bypass corpus: allowed names whose addresses are not private_ok"

[[connect]]
match = "denied.test:*"
action = "deny"
reason = "bypass corpus: denied.test is off limits"

[limits]
timeout = "30s"
concurrent = 32
`

type netCase struct {
	n       int
	line    int
	kind    string // deny | allow
	alone   bool
	icmp    bool
	layered bool // stopped by another layer too: the host-mode mutation does not fail it
	needs   string
	want    string
	script  string
}

func (c *netCase) String() string {
	return fmt.Sprintf("network.txtar:%d [%s] %.160q", c.line, c.kind, c.script)
}

func loadNetCorpus(t *testing.T) []*netCase {
	t.Helper()
	ar, err := txtar.ParseFile("testdata/network.txtar")
	if err != nil {
		t.Fatal(err)
	}
	scripts := map[string]string{}
	var cases []byte
	for _, f := range ar.Files {
		switch {
		case f.Name == "cases":
			cases = f.Data
		case strings.HasPrefix(f.Name, "script/"):
			scripts[strings.TrimPrefix(f.Name, "script/")] = string(f.Data)
		default:
			t.Fatalf("network.txtar: unknown section %q", f.Name)
		}
	}
	base := bytes.Count(ar.Comment, []byte("\n")) + 1
	for _, f := range ar.Files {
		if f.Name == "cases" {
			break
		}
		base += bytes.Count(f.Data, []byte("\n")) + 1
	}
	var out []*netCase
	seen := map[string]int{}
	for i, l := range strings.Split(string(cases), "\n") {
		s := strings.TrimSpace(l)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		c := &netCase{n: len(out) + 1, line: base + i + 1}
		f := strings.SplitN(s, " ", 3)
		if len(f) != 3 || (f[0] != "deny" && f[0] != "allow") {
			t.Fatalf("network.txtar:%d: want KIND FLAGS SCRIPT: %q", c.line, l)
		}
		c.kind = f[0]
		for _, fl := range strings.Split(f[1], ",") {
			switch {
			case fl == "-":
			case fl == "alone":
				c.alone = true
			case fl == "layered":
				c.layered = true
			case fl == "icmp":
				c.icmp, c.alone = true, true
			case strings.HasPrefix(fl, "needs="):
				c.needs = strings.TrimPrefix(fl, "needs=")
			case strings.HasPrefix(fl, "want="):
				c.want = strings.TrimPrefix(fl, "want=")
			default:
				t.Fatalf("network.txtar:%d: unknown flag %q", c.line, fl)
			}
		}
		c.script = strings.TrimSpace(f[2])
		if strings.HasPrefix(c.script, "@") {
			body, ok := scripts[c.script[1:]]
			if !ok {
				t.Fatalf("network.txtar:%d: no section script/%s", c.line, c.script[1:])
			}
			c.script = body
		}
		if c.kind == "allow" && c.want == "" {
			t.Fatalf("network.txtar:%d: a control needs want=TEXT", c.line)
		}
		if prev, dup := seen[c.script]; dup {
			t.Fatalf("network.txtar:%d: the same script as line %d", c.line, prev)
		}
		seen[c.script] = c.line
		out = append(out, c)
	}
	if len(out) > netMaxCases {
		t.Fatalf("network.txtar: %d cases; the test host has addresses for %d", len(out), netMaxCases)
	}
	return out
}

// netCaseWorld is one case's forbidden servers.
type netCaseWorld struct {
	c        *netCase
	e        *netEnv
	ha       *netServer // shared: the test host's APORT
	f, h     *netServer
	u, hu    udpCounter
	vars     []string
	token    string
	hip      string
	icmpBase int
}

func newNetCaseWorld(t *testing.T, e *netEnv, c *netCase, aport int, ha *netServer) *netCaseWorld {
	w := &netCaseWorld{c: c, e: e, ha: ha, hip: netCaseIP(c.n), token: fmt.Sprintf("n%dx", c.n)}
	fip := fmt.Sprintf("127.0.1.%d", c.n)
	var fport int
	for try := 0; ; try++ {
		w.f = newNetServer(fmt.Sprintf("case%d-F", c.n))
		w.f.handle = reachedHandler(fmt.Sprintf("case %d loopback", c.n))
		fport = w.f.listen(t, e.gwNS, "tcp", "127.0.0.1:0")
		var more []net.Listener
		for _, a := range []string{fmt.Sprintf("[::1]:%d", fport), fmt.Sprintf("%s:%d", fip, fport)} {
			if l, err := listenIn(e.gwNS, "tcp", a); err == nil {
				more = append(more, l)
			}
		}
		if len(more) == 2 {
			for _, l := range more {
				w.f.adopt(t, l)
			}
			break
		}
		for _, l := range more {
			l.Close()
		}
		w.f.close()
		if try > 20 {
			t.Fatalf("no port free on 127.0.0.1, ::1 and %s", fip)
		}
	}
	w.f.listen(t, e.gwNS, "tcp", fmt.Sprintf("%s:%d", fip, aport))
	w.h = newNetServer(fmt.Sprintf("case%d-H", c.n))
	w.h.handle = reachedHandler(fmt.Sprintf("case %d test host", c.n))
	hport := w.h.listen(t, e.thNS, "tcp", ":0")
	uport := w.u.listen(t, e.gwNS, "127.0.0.1:0")
	huport := w.hu.listen(t, e.thNS, ":0")
	a := netip.MustParseAddr(w.hip).As4()
	dec := binary.BigEndian.Uint32(a[:])
	w.vars = []string{
		"FPORT", strconv.Itoa(fport), "HPORT", strconv.Itoa(hport), "APORT", strconv.Itoa(aport),
		"UPORT", strconv.Itoa(uport), "HUPORT", strconv.Itoa(huport),
		"FIP", fip, "HIP", w.hip, "HIPDEC", strconv.FormatUint(uint64(dec), 10), "HIPHEX", fmt.Sprintf("0x%08x", dec),
		"HIPDASH", strings.ReplaceAll(w.hip, ".", "-"), "HOST6", netHost6, "N", strconv.Itoa(c.n), "TOKEN", w.token,
		"TOOLS", e.tools, "DNSPORT", strconv.Itoa(e.dnsPort),
	}
	if c.icmp {
		w.icmpBase = icmpEchoesIn(t, e.th.PID())
	}
	t.Cleanup(func() { w.f.close(); w.h.close() })
	return w
}

func (w *netCaseWorld) script() string { return subst(w.c.script, w.vars...) }

// contacts lists every way the case's forbidden destinations were reached.
func (w *netCaseWorld) contacts(t testing.TB) []string {
	var out []string
	if n := w.f.Accepts(); n > 0 {
		out = append(out, fmt.Sprintf("%d TCP connections to the gateway's loopback servers", n))
	}
	if n := w.h.Accepts(); n > 0 {
		out = append(out, fmt.Sprintf("%d TCP connections to the test host's HPORT", n))
	}
	if n := w.ha.AcceptsAt(w.hip); n > 0 {
		out = append(out, fmt.Sprintf("%d TCP connections to %s:APORT", n, w.hip))
	}
	if n := w.u.count(); n > 0 {
		out = append(out, fmt.Sprintf("%d datagrams to the gateway's 127.0.0.1:UPORT", n))
	}
	if n := w.hu.count(); n > 0 {
		out = append(out, fmt.Sprintf("%d datagrams to the test host's HUPORT", n))
	}
	if q := w.e.dns.queried(w.token); len(q) > 0 {
		out = append(out, fmt.Sprintf("DNS queries reached the test's server: %q", q))
	}
	if w.c.icmp {
		if n := icmpEchoesIn(t, w.e.th.PID()) - w.icmpBase; n > 0 {
			out = append(out, fmt.Sprintf("%d ICMP echo requests reached the test host", n))
		}
	}
	return out
}

func (w *netCaseWorld) reset(t testing.TB) {
	w.f.reset()
	w.h.reset()
	w.u.mu.Lock()
	w.u.n = 0
	w.u.mu.Unlock()
	w.hu.mu.Lock()
	w.hu.n = 0
	w.hu.mu.Unlock()
	w.e.dns.forget(w.token)
	w.ha.mu.Lock()
	delete(w.ha.byLocal, w.hip)
	w.ha.mu.Unlock()
	if w.c.icmp {
		w.icmpBase = icmpEchoesIn(t, w.e.th.PID())
	}
}

// forget drops the recorded queries whose name holds s.
func (d *netDNS) forget(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	kept := d.seen[:0]
	for _, q := range d.seen {
		if f := strings.Fields(q); len(f) > 1 && strings.Contains(f[1], s) {
			continue
		}
		kept = append(kept, q)
	}
	d.seen = kept
}

type netCaseRun struct {
	c      *netCase
	script string
	res    result
}

// netCorpus is the corpus with its daemon and shared servers.
type netCorpus struct {
	e       *netEnv
	d       *daemon
	cases   []*netCase
	aport   int
	ha      *netServer
	mu      sync.Mutex
	runs    []*netCaseRun
	skipped []string
}

// newNetCorpus loads the corpus and starts its daemon; t is the test the
// whole corpus (parallel and alone parts) runs under.
func newNetCorpus(t *testing.T, e *netEnv) *netCorpus {
	k := &netCorpus{e: e, cases: loadNetCorpus(t)}
	if n := countKind(k.cases, "deny"); n < 40 {
		t.Errorf("network.txtar has %d deny cases; the issue asks for at least 40", n)
	}
	allowed := newNetServer("corpus-allowed")
	allowed.handle = func(c net.Conn) {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		c.Read(make([]byte, 4096))
		fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nALLOWED-OK\n")
	}
	k.aport = allowed.listen(t, e.gwNS, "tcp", "127.0.0.1:0")
	k.ha = newNetServer("corpus-HA")
	k.ha.handle = reachedHandler("case test host APORT")
	k.ha.listen(t, e.thNS, "tcp", fmt.Sprintf(":%d", k.aport))
	body := strings.ReplaceAll(netCorpusProfile, "APORT", strconv.Itoa(k.aport))
	k.d = e.startDaemon(t, "file", e.netConfig("127.0.0.0/8"), profile{"corpus", body})
	return k
}

func (k *netCorpus) one(t *testing.T, c *netCase) {
	e, d := k.e, k.d
	if c.needs != "" {
		if _, err := exec.LookPath(c.needs); err != nil {
			k.mu.Lock()
			k.skipped = append(k.skipped, fmt.Sprintf("%s: %s is not installed", c, c.needs))
			k.mu.Unlock()
			t.Skipf("%s is not installed", c.needs)
		}
	}
	w := newNetCaseWorld(t, e, c, k.aport, k.ha)
	script := w.script()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	start := time.Now()
	r := e.ungated(ctx, script)
	took := time.Since(start)
	got := w.contacts(t)
	switch c.kind {
	case "deny":
		if len(got) == 0 {
			t.Errorf("%s: NOT LIVE: without execgate it reaches no forbidden destination, so it proves nothing\n%v", c, r)
			return
		}
	case "allow":
		if r.code != 0 || !strings.Contains(string(r.stdout), c.want) || len(got) > 0 {
			t.Errorf("%s: control without execgate: want exit 0, %q and no forbidden contact (%v)\n%v", c, c.want, got, r)
		}
	}
	w.reset(t)
	start = time.Now()
	g := e.gated(ctx, d, script)
	gtook := time.Since(start)
	if took > 5*time.Second || gtook > 5*time.Second {
		t.Logf("%s: took %v without execgate, %v through it", c, took.Round(time.Millisecond), gtook.Round(time.Millisecond))
	}
	// A contact may come late (a half-open connection): look twice.
	got = w.contacts(t)
	if len(got) == 0 {
		time.Sleep(100 * time.Millisecond)
		got = w.contacts(t)
	}
	k.mu.Lock()
	k.runs = append(k.runs, &netCaseRun{c: c, script: script, res: g})
	k.mu.Unlock()
	if os.Getenv("NETWORK_VERBOSE") != "" {
		t.Logf("%s: through execgate: %v", c, g)
	}
	if netMutation() == "host" && c.kind == "deny" && len(got) == 0 && !c.layered {
		t.Errorf("MUTATION SURVIVED: %s is stopped with network.mode = \"host\" too: it does not test proxy mode (tag it layered if another layer stops it)\n%v", c, g)
	}
	switch c.kind {
	case "deny":
		if len(got) > 0 {
			t.Errorf("BYPASS %s: through execgate: %v\n%v", c, got, g)
		} else if g.code == 0 {
			t.Errorf("%s: no contact through execgate, but the command succeeded (exit 0): it should fail\n%v", c, g)
		}
	case "allow":
		if g.code != 0 || !strings.Contains(string(g.stdout), c.want) || len(got) > 0 {
			t.Errorf("%s: control through execgate: want exit 0, %q and no forbidden contact (%v)\n%v", c, c.want, got, g)
		}
	}
}

func netCaseName(c *netCase) string { return fmt.Sprintf("%02d-line%d", c.n, c.line) }

// runParallel runs the cases that may run alongside anything else.
func (k *netCorpus) runParallel(t *testing.T) {
	var subs []netSub
	for _, c := range k.cases {
		if !c.alone {
			subs = append(subs, netSub{netCaseName(c), func(t *testing.T) { k.one(t, c) }})
		}
	}
	runConcurrently(t, 8, subs)
}

// runAlone runs, one by one, the cases that must have the network to
// themselves (a scan of every loopback listener, ICMP counted on the
// test host): call it when nothing else runs. Then it sums up.
func (k *netCorpus) runAlone(t *testing.T) {
	for _, c := range k.cases {
		if c.alone {
			t.Run(netCaseName(c), func(t *testing.T) { k.one(t, c) })
		}
	}
	// The journal: how each refused case was stopped.
	recs := k.d.records()
	byScript := map[string]string{}
	for _, r := range recs {
		if r.Fields[audit.FieldEvent] == "request" {
			byScript[r.Fields[audit.FieldScript]] = r.Fields[audit.FieldID]
		}
	}
	byID := map[string][]*audit.Record{}
	for _, r := range recs {
		if ev := r.Fields[audit.FieldEvent]; ev == "connect" {
			byID[r.Fields[audit.FieldID]] = append(byID[r.Fields[audit.FieldID]], r)
		}
	}
	tally := map[string]int{}
	var silent []string
	for _, run := range k.runs {
		if run.c.kind != "deny" {
			continue
		}
		id := byScript[run.script]
		var rules []string
		for _, cr := range byID[id] {
			if cr.Fields[audit.FieldDecision] == "deny" {
				rule := cr.Fields[audit.FieldRule]
				if rule == "" {
					rule = "(no rule)"
					t.Logf("line %d: a connect denial without EXECGATE_RULE: %s:%s %s proto=%s reason=%q", run.c.line,
						cr.Fields[audit.FieldHost], cr.Fields[audit.FieldPort], cr.Fields[audit.FieldArgv], cr.Fields[audit.FieldProto], cr.Fields[audit.FieldReason])
				}
				rules = append(rules, rule)
			}
		}
		if len(rules) == 0 {
			tally["no connect record (UDP, ICMP, DNS, the run's own loopback)"]++
			silent = append(silent, fmt.Sprintf("%d", run.c.line))
			continue
		}
		sort.Strings(rules)
		tally["connect denied: "+strings.Join(uniq(rules), " ")]++
	}
	var lines []string
	for k, v := range tally {
		lines = append(lines, fmt.Sprintf("%3d  %s", v, k))
	}
	sort.Strings(lines)
	sort.Slice(silent, func(i, j int) bool { a, _ := strconv.Atoi(silent[i]); b, _ := strconv.Atoi(silent[j]); return a < b })
	t.Logf("network corpus: %d cases (%d deny, %d controls), %d skipped; how the deny cases were stopped:\n  %s\n  stopped with no connect record: lines %s",
		len(k.cases), countKind(k.cases, "deny"), countKind(k.cases, "allow"), len(k.skipped), strings.Join(lines, "\n  "), strings.Join(silent, ", "))
	for _, s := range k.skipped {
		t.Log("SKIPPED " + s)
	}
}

func countKind(cases []*netCase, kind string) int {
	n := 0
	for _, c := range cases {
		if c.kind == kind {
			n++
		}
	}
	return n
}

func uniq(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
