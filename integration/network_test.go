package integration

// Network egress by name (network.mode = "proxy", issue 15), through the
// real daemon as the agent uid, in the world of network_env_test.go.
//
// Every security check has both halves: what is refused did not happen
// (the forbidden server of the test counted no connection at all, no
// datagram, no echo request) and what is allowed did (its server counted
// the connection, the client got the content, the journal has it). And
// every refused attack is first run WITHOUT execgate, as the agent uid
// in the same network namespace the daemon dials from, where it must
// reach the forbidden server: the refusal is execgate's, not a typo or a
// missing route. None of these tests can pass with network.mode =
// "host": the forbidden servers would be reached, and the journal would
// have no connect records.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
)

// netProfileBody is the agent "net": proxy mode, the test's names allowed,
// denied.test denied, ask.test held for a human.
const netProfileBody = `uid = 65534
security = "full"
workdirs = ["WORK"]

[network]
mode = "proxy"

[[connect]]
match = "{allowed,git,npm,pypi,loop,private,ok,metadata,mixed,rebind,v6}.test:*"
action = "allow"
reason = "network test: the test's own servers"

[[connect]]
match = "denied.test:*"
action = "deny"
reason = "network test: denied.test is off limits"

[[connect]]
match = "ask.test:*"
action = "ask"
reason = "network test: ask.test needs a human"

[limits]
timeout = "40s"
concurrent = 32
LIMITS
`

const (
	netAllowMatch = "{allowed,git,npm,pypi,loop,private,ok,metadata,mixed,rebind,v6}.test:*"
	netDenyMatch  = "denied.test:*"
	netAskMatch   = "ask.test:*"
	netDenyReason = "network test: denied.test is off limits"
)

func netProfile(limits string) string { return strings.Replace(netProfileBody, "LIMITS", limits, 1) }

// netNoProxyEnv unsets every proxy variable (for the clients that must
// work without them).
const netNoProxyEnv = "env -u HTTP_PROXY -u http_proxy -u HTTPS_PROXY -u https_proxy -u ALL_PROXY -u all_proxy -u NO_PROXY -u no_proxy "

func TestNetwork(t *testing.T) {
	begin := time.Now()
	e := newNetEnv(t)
	t.Logf("the network world is up after %v", time.Since(begin).Round(time.Millisecond))
	netDNSTable["ask.test"] = []string{"127.0.0.1"}
	body := netProfile("")
	dMain := e.startDaemon(t, "file", e.netConfig("127.0.0.0/8", netOK+"/32"), profile{"net", body})
	dNoPrivate := e.startDaemon(t, "file", e.netConfig(), profile{"net", body})
	// One limit a daemon: each test measures its own limit alone.
	dConns := e.startDaemon(t, "file", e.netConfig("127.0.0.0/8"), profile{"net", netProfile("connections = 2")})
	dEgress := e.startDaemon(t, "file", e.netConfig("127.0.0.0/8"), profile{"net", netProfile("egress_bytes = 100000")})
	locs := netLocs{
		allow: ruleLoc(t, "net", body, netAllowMatch),
		deny:  ruleLoc(t, "net", body, netDenyMatch),
		ask:   ruleLoc(t, "net", body, netAskMatch),
	}
	// A quick probe first: when proxy mode does not work at all, say so
	// once instead of in every subtest.
	probe := e.gated(context.Background(), dMain, "cat /etc/resolv.conf; echo \"proxy=$HTTP_PROXY\"")
	if netMutation() == "" && (!strings.Contains(string(probe.stdout), "nameserver 127.0.0.1") || !strings.Contains(string(probe.stdout), "proxy=http://127.0.0.1:3128")) {
		t.Fatalf("a proxy-mode run does not see execgate's resolv.conf and proxy variables: %v\ndaemon: %.2000s", probe, dMain.stderr.String())
	}
	corpus := newNetCorpus(t, e)
	t.Logf("daemons up after %v", time.Since(begin).Round(time.Millisecond))
	// Concurrently, whatever -parallel says (GOMAXPROCS, 2 here): the
	// runs themselves are capped by e.slots.
	runConcurrently(t, 16, []netSub{
		{"AllowedAndDenied", func(t *testing.T) { netTestClients(t, e, dMain, locs) }},
		{"PrivateAddresses", func(t *testing.T) { netTestPrivate(t, e, dMain, dNoPrivate) }},
		{"Rebinding", func(t *testing.T) { netTestRebinding(t, e, dMain) }},
		{"NoIPLiterals", func(t *testing.T) { netTestLiterals(t, e, dMain) }},
		{"NoUDP", func(t *testing.T) { netTestUDP(t, e, dMain) }},
		{"NoICMP", func(t *testing.T) { netTestICMP(t, e, dMain) }},
		{"JournalAndBytes", func(t *testing.T) { netTestJournal(t, e, dMain, locs) }},
		{"Ask", func(t *testing.T) { netTestAsk(t, e, dMain, locs) }},
		{"LimitConnections", func(t *testing.T) {
			netTestLimitConns(t, e, dConns, lineLoc(t, "net", netProfile("connections = 2"), "connections = 2"))
		}},
		{"LimitEgressBytes", func(t *testing.T) {
			netTestLimitEgress(t, e, dEgress, lineLoc(t, "net", netProfile("egress_bytes = 100000"), "egress_bytes = 100000"))
		}},
		{"Corpus", corpus.runParallel},
	})
	t.Logf("parallel tests done after %v", time.Since(begin).Round(time.Millisecond))
	t.Run("CorpusAlone", corpus.runAlone)
	t.Logf("corpus done after %v", time.Since(begin).Round(time.Millisecond))
}

type netLocs struct{ allow, deny, ask string }

// netSub is a subtest for runConcurrently.
type netSub struct {
	name string
	f    func(*testing.T)
}

// runConcurrently runs subs as subtests of t, up to workers at a time,
// and returns when all are done.
func runConcurrently(t *testing.T, workers int, subs []netSub) {
	ch := make(chan netSub)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range ch {
				t.Run(s.name, s.f)
			}
		}()
	}
	for _, s := range subs {
		ch <- s
	}
	close(ch)
	wg.Wait()
}

func netCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// subst replaces {{KEY}} in s.
func subst(s string, kv ...string) string {
	for i := 0; i+1 < len(kv); i += 2 {
		s = strings.ReplaceAll(s, "{{"+kv[i]+"}}", kv[i+1])
	}
	return s
}

// netClient is one way of fetching from the test's servers.
type netClient struct {
	name   string
	host   string // the allowed name it uses
	script string // {{HOST}} {{PORT}} {{TOOLS}}
	want   string // in stdout ({{HOST}} replaced)
	proto  string // EXECGATE_PROTO of its connections
}

func netClients(e *netEnv) []netClient {
	return []netClient{
		{"curl", "allowed.test", `curl -sSf --max-time 15 http://{{HOST}}:{{PORT}}/hello`, "hello from {{HOST}}", "http"},
		{"curl-connect", "allowed.test", `curl -sSf -p --max-time 15 http://{{HOST}}:{{PORT}}/hello`, "hello from {{HOST}}", "http"},
		{"git-clone", "git.test", `cd /tmp && HOME=/tmp git clone -q http://{{HOST}}:{{PORT}}/git/repo.git clone && cat clone/README`, e.fx.gitToken, "http"},
		{"npm-install", "npm.test", `mkdir /tmp/npmw && cd /tmp/npmw && HOME=/tmp npm install --no-audit --no-fund --no-update-notifier --fetch-retries=0 --cache /tmp/npm-cache --loglevel=error http://{{HOST}}:{{PORT}}/npm/tinypkg-1.0.0.tgz && node -e 'console.log(require("tinypkg"))'`, e.fx.npmToken, "http"},
		{"pip-download", "pypi.test", `HOME=/tmp /usr/bin/python3 -m pip download --no-deps --no-cache-dir --disable-pip-version-check --retries 0 --timeout 10 --index-url http://{{HOST}}:{{PORT}}/simple/ --trusted-host {{HOST}} -d /tmp/dl tinypkg && ls /tmp/dl`, e.fx.whlName, "http"},
		{"curl-noproxy", "allowed.test", netNoProxyEnv + `curl -sSf --noproxy '*' --max-time 15 http://{{HOST}}:{{PORT}}/hello`, "hello from {{HOST}}", "transparent"},
		{"python-socket", "allowed.test", netNoProxyEnv + `/usr/bin/python3 {{TOOLS}}/netc.py direct {{HOST}} {{PORT}}`, "hello from {{HOST}}", "transparent"},
	}
}

// netTestClients: an allowed name works through the proxy (curl, git
// clone over smart HTTP, npm install of a tarball URL, pip download from
// an index) and without the proxy variables (curl --noproxy, a raw
// socket); denied.test, the same servers' content, fails each of those
// ways and its server sees no connection, while without execgate the
// same command fetches it.
func netTestClients(t *testing.T, e *netEnv, d *daemon, locs netLocs) {
	var subs []netSub
	for _, c := range netClients(e) {
		subs = append(subs, netSub{c.name, func(t *testing.T) {
			ctx := netCtx(t)
			ok := newNetServer("ok-" + c.name)
			ok.http = e.fx.handler(c.host)
			okPort := ok.listen(t, e.gwNS, "tcp", "127.0.0.1:0")
			bad := newNetServer("denied-" + c.name)
			bad.http = e.fx.handler("denied.test")
			badPort := bad.listen(t, e.gwNS, "tcp", "127.0.0.1:0")
			script := func(host string, port int) string {
				return subst(c.script, "HOST", host, "PORT", strconv.Itoa(port), "TOOLS", e.tools)
			}
			want := func(host string) string { return subst(c.want, "HOST", host) }

			// The allowed half, through execgate.
			s := script(c.host, okPort)
			r := e.gated(ctx, d, s)
			if r.code != 0 || !strings.Contains(string(r.stdout), want(c.host)) {
				t.Errorf("allowed %s:%d through execgate: want exit 0 and %q\n%v", c.host, okPort, want(c.host), r)
			}
			if ok.Accepts() == 0 {
				t.Errorf("the allowed server saw no connection")
			}
			port := strconv.Itoa(okPort)
			_, recs := runRecords(t, d, s, 5*time.Second, func(recs []*audit.Record) bool {
				return len(connRecords(recs, "connect", audit.FieldHost, c.host, audit.FieldPort, port)) > 0 &&
					len(connRecords(recs, "disconnect", audit.FieldHost, c.host, audit.FieldPort, port)) > 0
			})
			conns := connRecords(recs, "connect", audit.FieldHost, c.host, audit.FieldPort, port)
			if len(conns) == 0 || len(connRecords(recs, "disconnect", audit.FieldHost, c.host, audit.FieldPort, port)) == 0 {
				t.Errorf("no connect and disconnect records for %s:%d in the run:%s", c.host, okPort, describeRecs(recs))
			}
			for _, cr := range conns {
				f := cr.Fields
				if f[audit.FieldDecision] != "allow" || f[audit.FieldAddr] != "127.0.0.1:"+port || f[audit.FieldProto] != c.proto ||
					f[audit.FieldRule] != locs.allow || f[audit.FieldAgent] != "net" || f[audit.FieldArgv] != fmt.Sprintf(`["connect","%s:%s"]`, c.host, port) {
					t.Errorf("connect record: want allow, addr 127.0.0.1:%s, proto %s, rule %s, agent net, argv [connect %s:%s]:%s", port, c.proto, locs.allow, c.host, port, describeRecs([]*audit.Record{cr}))
				}
			}
			for _, dr := range connRecords(recs, "connect", audit.FieldDecision, "deny") {
				t.Logf("note: the allowed run also had a refused connection:%s", describeRecs([]*audit.Record{dr}))
			}

			// The denied half: live without execgate...
			s = script("denied.test", badPort)
			r = e.ungated(ctx, s)
			if r.code != 0 || !strings.Contains(string(r.stdout), want("denied.test")) || bad.Accepts() == 0 {
				t.Fatalf("without execgate, %s does not fetch from denied.test (%d connections): the test proves nothing\n%v", c.name, bad.Accepts(), r)
			}
			bad.reset()
			// ...refused through it.
			r = e.gated(ctx, d, s)
			if n := bad.Accepts(); n != 0 {
				t.Errorf("BYPASS: denied.test's server saw %d connections through execgate\n%v", n, r)
			}
			if r.code == 0 || strings.Contains(string(r.stdout), want("denied.test")) {
				t.Errorf("denied.test through execgate: want a failure\n%v", r)
			}
			bp := strconv.Itoa(badPort)
			_, recs = runRecords(t, d, s, 5*time.Second, func(recs []*audit.Record) bool {
				return len(connRecords(recs, "connect", audit.FieldHost, "denied.test", audit.FieldDecision, "deny")) > 0
			})
			denials := connRecords(recs, "connect", audit.FieldHost, "denied.test", audit.FieldPort, bp, audit.FieldDecision, "deny")
			if len(denials) == 0 {
				t.Errorf("no connect deny record for denied.test:%s:%s", bp, describeRecs(recs))
			}
			for _, dr := range denials {
				if f := dr.Fields; f[audit.FieldRule] != locs.deny || f[audit.FieldReason] != netDenyReason || f[audit.FieldAddr] != "" {
					t.Errorf("deny record: want rule %s, reason %q, no address:%s", locs.deny, netDenyReason, describeRecs([]*audit.Record{dr}))
				}
			}
			if se := string(r.stderr); !strings.Contains(se, "execgate: denied: ") || !strings.Contains(se, "denied.test:"+bp) || !strings.Contains(se, netDenyReason) || !strings.Contains(se, locs.deny) {
				t.Errorf("egsh's stderr does not show the denial (connect denied.test:%s, reason, %s): %q", bp, locs.deny, se)
			}
			if len(connRecords(recs, "connect", audit.FieldDecision, "allow")) > 0 {
				t.Errorf("the denied run had an allowed connection:%s", describeRecs(recs))
			}
		}})
	}
	runConcurrently(t, len(subs), subs)
}

// netTestPrivate: an allowed name whose address is private (10.77.0.2),
// metadata (169.254.169.254), loopback without private_ok, or a mix of
// a good and a private address is refused, through the proxy (403 naming
// the address), SOCKS and the transparent path; the same names are
// reached without execgate. Controls: ok.test (10.77.0.3, private_ok)
// and loop.test with 127.0.0.0/8 in private_ok work.
func netTestPrivate(t *testing.T, e *netEnv, dMain, dNoPrivate *daemon) {
	cases := []struct {
		name    string
		d       *daemon
		host    string
		onHost  bool   // the server is on the test host (else the gateway's 127.0.0.1)
		ip      string // the address the name resolves to, counted ("": either of a mixed answer)
		allowed bool
	}{
		{"private", dMain, "private.test", true, netPrivate, false},
		{"metadata", dMain, "metadata.test", true, netMetadata, false},
		{"loopback-without-private_ok", dNoPrivate, "loop.test", false, "127.0.0.1", false},
		{"private-without-private_ok", dNoPrivate, "ok.test", true, netOK, false},
		{"mixed-answer", dMain, "mixed.test", true, "", false},
		{"control-private_ok-host", dMain, "ok.test", true, netOK, true},
		{"control-private_ok-loopback", dMain, "loop.test", false, "127.0.0.1", true},
	}
	var subs []netSub
	for _, c := range cases {
		subs = append(subs, netSub{c.name, func(t *testing.T) {
			ctx := netCtx(t)
			srv := newNetServer(c.name)
			srv.handle = reachedHandler(c.name)
			var port int
			if c.onHost {
				port = srv.listen(t, e.thNS, "tcp", ":0")
			} else {
				port = srv.listen(t, e.gwNS, "tcp", "127.0.0.1:0")
			}
			hp := fmt.Sprintf("%s:%d", c.host, port)
			reached := func() int {
				if c.ip == "" {
					return srv.Accepts()
				}
				return srv.AcceptsAt(c.ip)
			}
			named := c.ip
			if named == "" {
				named = netPrivate // the bad half of the mixed answer
			}
			script := fmt.Sprintf(`echo "proxy: $(curl -sS --max-time 10 -w ' HTTP %%{http_code}' http://%[1]s/)"
echo "socks: $(curl -sS --max-time 10 --proxy "$ALL_PROXY" http://%[1]s/ 2>&1; echo " rc=$?")"
echo "transparent: $(curl -sS --max-time 10 --noproxy '*' http://%[1]s/ 2>&1; echo " rc=$?")"
`, hp)
			if !c.allowed {
				// Without execgate the name reaches its server.
				r := e.ungated(ctx, fmt.Sprintf("curl -sSf --noproxy '*' --max-time 10 http://%s/", hp))
				if r.code != 0 || reached() == 0 {
					t.Fatalf("without execgate %s does not reach %s: the test proves nothing\n%v", hp, named, r)
				}
				srv.reset()
			}
			r := e.gated(ctx, c.d, script)
			out := string(r.stdout)
			n := reached()
			if c.allowed {
				if n != 3 || strings.Count(out, "REACHED") != 3 {
					t.Errorf("control %s: want 3 connections reaching %s (proxy, socks, transparent), got %d\n%v", hp, c.ip, n, r)
				}
				return
			}
			if n != 0 || srv.Accepts() != 0 || strings.Contains(out, "REACHED") {
				t.Errorf("BYPASS: %s (%s) was reached %d times (%d in all) through execgate\n%v", hp, named, n, srv.Accepts(), r)
			}
			if !strings.Contains(out, "HTTP 403") || !strings.Contains(out, "execgate: denied: connect "+hp) {
				t.Errorf("the proxy client did not get a 403 naming %s\n%v", hp, r)
			}
			if strings.Contains(out, " rc=0") {
				t.Errorf("a client succeeded\n%v", r)
			}
			_, recs := runRecords(t, c.d, script, 5*time.Second, func(recs []*audit.Record) bool {
				return len(connRecords(recs, "connect", audit.FieldHost, c.host, audit.FieldDecision, "deny")) >= 3
			})
			denials := connRecords(recs, "connect", audit.FieldHost, c.host, audit.FieldDecision, "deny")
			protos := map[string]bool{}
			for _, dr := range denials {
				protos[dr.Fields[audit.FieldProto]] = true
			}
			// (curl may try the name's synthetic IPv6 and IPv4 addresses
			// both: two transparent records.)
			if len(denials) < 3 || !protos["http"] || !protos["socks5"] || !protos["transparent"] {
				t.Errorf("want connect deny records for %s by http, socks5 and transparent:%s", hp, describeRecs(recs))
			}
			for _, dr := range denials {
				if !strings.Contains(dr.Fields[audit.FieldReason], named) || dr.Fields[audit.FieldAddr] != "" {
					t.Errorf("the denial should name the address %s and dial nothing:%s", named, describeRecs([]*audit.Record{dr}))
				}
			}
			if len(connRecords(recs, "connect", audit.FieldDecision, "allow")) > 0 {
				t.Errorf("an allowed connection:%s", describeRecs(recs))
			}
		}})
	}
	runConcurrently(t, len(subs), subs)
}

// netTestRebinding: rebind.test answers 10.77.0.3 (private_ok) and
// 10.77.0.2 (not) in turn. Without execgate the check-then-connect
// attack reaches 10.77.0.2; through execgate, 12 connections by name
// (proxy and transparent) reach only 10.77.0.3, every allowed connection
// dialled 10.77.0.3, and some were refused naming 10.77.0.2 (the answer
// did change under the daemon).
func netTestRebinding(t *testing.T, e *netEnv, d *daemon) {
	ctx := netCtx(t)
	srv := newNetServer("rebind")
	srv.handle = reachedHandler("rebind")
	port := srv.listen(t, e.thNS, "tcp", ":0")
	r := e.ungated(ctx, fmt.Sprintf("/usr/bin/python3 %s/rebind.py rebind.test %d %s", e.tools, port, netOK))
	if srv.AcceptsAt(netPrivate) == 0 {
		t.Fatalf("without execgate the rebinding attack does not reach %s: the test proves nothing\n%v", netPrivate, r)
	}
	srv.reset()
	script := fmt.Sprintf(`for i in 1 2 3 4 5 6; do
  /usr/bin/python3 %[1]s/netc.py direct rebind.test %[2]d
  curl -sS --max-time 10 http://rebind.test:%[2]d/; echo " rc=$?"
done`, e.tools, port)
	r = e.gated(ctx, d, script)
	if n := srv.AcceptsAt(netPrivate); n != 0 {
		t.Errorf("BYPASS: the rebinding answer redirected %d connections to %s\n%v", n, netPrivate, r)
	}
	good := srv.AcceptsAt(netOK)
	if good == 0 {
		t.Errorf("no connection reached %s (the allowed answer)\n%v", netOK, r)
	}
	p := strconv.Itoa(port)
	_, recs := runRecords(t, d, script, 5*time.Second, func(recs []*audit.Record) bool {
		return len(connRecords(recs, "connect", audit.FieldHost, "rebind.test")) >= 12
	})
	conns := connRecords(recs, "connect", audit.FieldHost, "rebind.test")
	allowed, refused := 0, 0
	for _, cr := range conns {
		switch cr.Fields[audit.FieldDecision] {
		case "allow":
			allowed++
			if a := cr.Fields[audit.FieldAddr]; a != netOK+":"+p {
				t.Errorf("an allowed rebind.test connection dialled %q, not the checked %s:%s", a, netOK, p)
			}
		case "deny":
			refused++
			if !strings.Contains(cr.Fields[audit.FieldReason], netPrivate) {
				t.Errorf("a refused rebind.test connection does not name %s:%s", netPrivate, describeRecs([]*audit.Record{cr}))
			}
		}
	}
	if len(conns) != 12 || allowed == 0 || refused == 0 || allowed != good {
		t.Errorf("want 12 connect records, some allowed (%d, %d reached the server) and some refused (%d):%s", allowed, good, refused, describeRecs(conns))
	}
}

// netTestLiterals: no IP literal reaches anything: the test host's
// private address, its private_ok address, an address of the synthetic
// range that no name was given, the test host over IPv6 and as an
// IPv4-mapped IPv6 address, and the gateway's own 127.0.0.1 (the run's
// loopback is its own), each by the HTTP proxy, CONNECT, SOCKS5 with a
// literal address, curl --noproxy and a raw socket. Without execgate
// every one of them reaches its server. A control in the same run: the
// test host by name (ok.test) works.
func netTestLiterals(t *testing.T, e *netEnv, d *daemon) {
	ctx := netCtx(t)
	th := newNetServer("literal-th")
	th.handle = reachedHandler("literal-th")
	q := th.listen(t, e.thNS, "tcp", ":0")
	lo := newNetServer("literal-lo")
	lo.handle = reachedHandler("literal-lo")
	lp := lo.listen(t, e.gwNS, "tcp", "127.0.0.1:0")
	lo.listen(t, e.gwNS, "tcp", fmt.Sprintf("[::1]:%d", lp))
	ctl := newNetServer("literal-control")
	ctl.handle = reachedHandler("control")
	cp := ctl.listen(t, e.thNS, "tcp", ":0")
	targets := []struct{ url, host, count string }{
		{fmt.Sprintf("%s:%d", netPrivate, q), netPrivate, netPrivate},
		{fmt.Sprintf("%s:%d", netOK, q), netOK, netOK},
		{fmt.Sprintf("%s:%d", netUnmapped4, q), netUnmapped4, netUnmapped4},
		{fmt.Sprintf("[%s]:%d", netHost6, q), netHost6, netHost6},
		{fmt.Sprintf("[::ffff:%s]:%d", netOK, q), "::ffff:" + netOK, netOK},
		{fmt.Sprintf("127.0.0.1:%d", lp), "127.0.0.1", "127.0.0.1"},
		{fmt.Sprintf("[::1]:%d", lp), "::1", "::1"},
	}
	var b strings.Builder
	port := func(u string) string { return u[strings.LastIndexByte(u, ':')+1:] }
	for _, tg := range targets {
		for _, a := range []struct{ how, cmd string }{
			{"proxy", "curl -sSf -g --max-time 8 http://" + tg.url + "/"},
			{"connect", "curl -sSf -g -p --max-time 8 http://" + tg.url + "/"},
			{"socks5", `curl -sSf -g --max-time 8 --proxy "socks5://${ALL_PROXY#socks5h://}" http://` + tg.url + "/"},
			{"noproxy", netNoProxyEnv + "curl -sSf -g --max-time 8 http://" + tg.url + "/"},
			{"socket", netNoProxyEnv + "/usr/bin/python3 " + e.tools + "/netc.py direct " + tg.host + " " + port(tg.url)},
			{"socks5-literal", "/usr/bin/python3 " + e.tools + "/netc.py socks5 " + tg.host + " " + port(tg.url)},
		} {
			fmt.Fprintf(&b, "%s >/tmp/out 2>&1; echo \"ATTEMPT %s %s rc=$? $(head -c 200 /tmp/out | tr '\\n' ' ')\"\n", a.cmd, a.how, tg.url)
		}
	}
	script := b.String()
	attempts := func(out string) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 4 && f[0] == "ATTEMPT" {
				m[f[1]+" "+f[2]] = strings.Join(f[3:], " ")
			}
		}
		return m
	}
	r := e.ungated(ctx, script)
	got := attempts(string(r.stdout))
	for k, v := range got {
		if !strings.HasPrefix(v, "rc=0") || !strings.Contains(v, "REACHED") {
			t.Errorf("without execgate, %s does not reach its server (%s): the case proves nothing", k, v)
		}
	}
	for _, tg := range targets {
		srv := th
		if strings.HasPrefix(tg.count, "127.") || tg.count == "::1" {
			srv = lo
		}
		if srv.AcceptsAt(tg.count) == 0 {
			t.Errorf("without execgate nothing reached %s", tg.count)
		}
	}
	if len(got) != 6*len(targets) {
		t.Fatalf("without execgate: %d attempts reported, want %d\n%v", len(got), 6*len(targets), r)
	}
	th.reset()
	lo.reset()
	script += fmt.Sprintf("curl -sSf --max-time 8 http://ok.test:%d/ && echo CONTROL-OK\n", cp)
	r = e.gated(ctx, d, script)
	got = attempts(string(r.stdout))
	if len(got) != 6*len(targets) {
		t.Errorf("through execgate: %d attempts reported, want %d\n%v", len(got), 6*len(targets), r)
	}
	for k, v := range got {
		if strings.HasPrefix(v, "rc=0") || strings.Contains(v, "REACHED") {
			t.Errorf("BYPASS: %s through execgate: %s", k, v)
		}
	}
	if th.Accepts() != 0 || lo.Accepts() != 0 {
		t.Errorf("BYPASS: through execgate the literal servers saw %d (test host) and %d (gateway loopback) connections\n%v", th.Accepts(), lo.Accepts(), r)
	}
	if !strings.Contains(string(r.stdout), "CONTROL-OK") || ctl.AcceptsAt(netOK) != 1 {
		t.Errorf("control: ok.test:%d by name must work in the same run (%d connections)\n%v", cp, ctl.AcceptsAt(netOK), r)
	}
	_, recs := runRecords(t, d, script, 5*time.Second, nil)
	for _, cr := range connRecords(recs, "connect", audit.FieldDecision, "allow") {
		if cr.Fields[audit.FieldHost] != "ok.test" {
			t.Errorf("an allowed connection to a literal:%s", describeRecs([]*audit.Record{cr}))
		}
	}
	t.Logf("literal attempts refused through execgate: %d; connect deny records: %d", len(got), len(connRecords(recs, "connect", audit.FieldDecision, "deny")))
}

// netTestUDP: no datagram leaves the run: not to the test host (v4 and
// v6), not to the gateway's 127.0.0.1 (another port than 53), not to the
// test host's DNS port. Without execgate all of them arrive. Control in
// the same run: DNS over UDP to 127.0.0.1:53 (execgate's) answers with a
// synthetic address.
func netTestUDP(t *testing.T, e *netEnv, d *daemon) {
	ctx := netCtx(t)
	var th, lo udpCounter
	up := th.listen(t, e.thNS, ":0")
	lp := lo.listen(t, e.gwNS, "127.0.0.1:0")
	script := fmt.Sprintf(`py=/usr/bin/python3
$py %[1]s/udp.py %[2]s %[3]d; echo "rc=$?"
$py %[1]s/udp.py %[4]s %[3]d; echo "rc=$?"
$py %[1]s/udp.py 127.0.0.1 %[5]d; echo "rc=$?"
$py -c 'import socket; print("resolved", socket.gethostbyname("allowed.test"))'
`, e.tools, netPrivate, up, netHost6, lp)
	r := e.ungated(ctx, script)
	if th.count() == 0 || lo.count() == 0 || strings.Count(string(r.stdout), "rc=0") != 3 {
		t.Fatalf("without execgate the datagrams do not arrive (test host %d, loopback %d): the test proves nothing\n%v", th.count(), lo.count(), r)
	}
	thBefore, loBefore := th.count(), lo.count()
	r = e.gated(ctx, d, script+": gated\n")
	if n, m := th.count()-thBefore, lo.count()-loBefore; n != 0 || m != 0 {
		t.Errorf("BYPASS: through execgate %d datagrams reached the test host and %d the gateway's 127.0.0.1:%d\n%v", n, m, lp, r)
	}
	if strings.Contains(string(r.stdout), "rc=0") {
		t.Errorf("a UDP client got an echo through execgate\n%v", r)
	}
	var resolved string
	for _, l := range strings.Split(string(r.stdout), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "resolved" {
			resolved = f[1]
		}
	}
	if a, err := netip.ParseAddr(resolved); err != nil || !netip.MustParsePrefix("198.18.0.0/15").Contains(a) {
		t.Errorf("control: DNS over UDP to execgate should answer allowed.test with a synthetic address (198.18.0.0/15), got %q\n%v", resolved, r)
	}
}

// netTestICMP: no echo request leaves the run. The run waits while the
// test opens datagram ICMP to every group in the run's own network
// namespace (ping_group_range: the agent has no cap_net_raw, and the
// sandbox cannot even exec /usr/bin/ping, which has file capabilities, so
// a copy of ping without them is what can try), then pings the test host
// and the metadata address: no reply, and the test host counts no echo
// request. Without execgate the same copy of ping reaches it (datagram
// ICMP is open in the gateway too).
func netTestICMP(t *testing.T, e *netEnv, d *daemon) {
	if _, err := exec.LookPath("ping"); err != nil {
		t.Fatal("ping is not installed: run scripts/deps.sh (iputils-ping)")
	}
	ctx := netCtx(t)
	before := icmpEchoesIn(t, e.th.PID())
	r := e.ungated(ctx, "cp /usr/bin/ping /tmp/ping && /tmp/ping -c 2 -W 2 "+netPrivate)
	if r.code != 0 || icmpEchoesIn(t, e.th.PID()) == before {
		t.Fatalf("without execgate ping does not reach the test host: the test proves nothing\n%v", r)
	}
	flag := filepath.Join(e.dir, fmt.Sprintf("icmp-go-%d", time.Now().UnixNano()))
	script := fmt.Sprintf(`/usr/bin/python3 %s/wait.py %s || exit 99
echo "range: $(cat /proc/sys/net/ipv4/ping_group_range)"
cp /usr/bin/ping /tmp/ping
/tmp/ping -c 2 -W 2 %s; echo "rc=$?"
/tmp/ping -c 1 -W 1 %s; echo "rc=$?"`, e.tools, flag, netPrivate, netMetadata)
	done := make(chan result, 1)
	go func() { done <- e.gated(ctx, d, script) }()
	_, ns := findRunNetns(t, "wait.py", flag, 20*time.Second)
	if sameNetns(ns, e.gwNS) {
		t.Logf("note: the run shares the daemon's network namespace")
	}
	if out, err := exec.Command("nsenter", "--net="+ns, "--", "sh", "-c", "echo 0 2147483647 >/proc/sys/net/ipv4/ping_group_range").CombinedOutput(); err != nil {
		t.Errorf("open datagram ICMP in the run's namespace: %v %s", err, out)
	}
	before = icmpEchoesIn(t, e.th.PID())
	os.WriteFile(flag, nil, 0o644)
	r = <-done
	if n := icmpEchoesIn(t, e.th.PID()) - before; n != 0 {
		t.Errorf("BYPASS: the test host received %d echo requests from the run\n%v", n, r)
	}
	if !strings.Contains(string(r.stdout), "range: 0\t2147483647") && !strings.Contains(string(r.stdout), "range: 0 2147483647") {
		t.Errorf("the run did not see datagram ICMP opened (the check would prove less)\n%v", r)
	}
	if strings.Count(string(r.stdout), "rc=") != 2 || strings.Contains(string(r.stdout), "rc=0") {
		t.Errorf("ping must fail twice through execgate\n%v", r)
	}
}

// byteServer reads until EOF, then sends reply bytes and closes; got is
// what it read.
type byteServer struct {
	*netServer
	mu  sync.Mutex
	got []int
}

func newByteServer(t *testing.T, e *netEnv, reply int) (*byteServer, int) {
	b := &byteServer{netServer: newNetServer(fmt.Sprintf("bytes-%d", reply))}
	b.handle = func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		b.mu.Lock()
		b.got = append(b.got, int(n))
		b.mu.Unlock()
		c.Write([]byte(strings.Repeat("y", reply)))
	}
	return b, b.listen(t, e.gwNS, "tcp", "127.0.0.1:0")
}

func (b *byteServer) received() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.got...)
}

// netTestJournal: every connection of a run is in the journal with the
// run's id and agent, and the exact bytes each way: three connections
// (transparent, HTTP CONNECT, SOCKS5) that send N bytes and receive M
// have disconnect records with EXECGATE_BYTES_OUT=N and
// EXECGATE_BYTES_IN=M (and the servers got exactly N). A denial's
// reason and rule reach the client: the 403 body is exactly
// "execgate: denied: connect HOST:PORT: REASON (RULE)", SOCKS gets
// reply 2, the transparent path a reset or refusal, egsh's stderr the
// denied event; `execgate journal --event connect` prints the short
// lines.
func netTestJournal(t *testing.T, e *netEnv, d *daemon, locs netLocs) {
	ctx := netCtx(t)
	type flow struct {
		mode, proto string
		out, in     int
		srv         *byteServer
		port        int
	}
	flows := []*flow{{mode: "direct", proto: "transparent", out: 12345, in: 54321}, {mode: "connect", proto: "http", out: 23456, in: 65432}, {mode: "socks5", proto: "socks5", out: 34567, in: 76543}}
	var b strings.Builder
	for _, f := range flows {
		f.srv, f.port = newByteServer(t, e, f.in)
		fmt.Fprintf(&b, "/usr/bin/python3 %s/netc.py %s allowed.test %d --send %d\n", e.tools, f.mode, f.port, f.out)
	}
	deny := newNetServer("journal-denied")
	deny.handle = reachedHandler("journal-denied")
	dp := deny.listen(t, e.gwNS, "tcp", "127.0.0.1:0")
	fmt.Fprintf(&b, "echo \"body: $(curl -s --max-time 10 http://denied.test:%d/)\"\n", dp)
	fmt.Fprintf(&b, "/usr/bin/python3 %s/netc.py socks5 denied.test %d\n", e.tools, dp)
	fmt.Fprintf(&b, "/usr/bin/python3 %s/netc.py direct denied.test %d\n", e.tools, dp)
	script := b.String()
	r := e.gated(ctx, d, script)
	out := string(r.stdout)
	for _, f := range flows {
		if !strings.Contains(out, fmt.Sprintf("recv %d yyy", f.in)) {
			t.Errorf("%s: the client did not receive %d bytes\n%v", f.mode, f.in, r)
		}
		if got := f.srv.received(); len(got) != 1 || got[0] != f.out {
			t.Errorf("%s: the server received %v, want [%d]", f.mode, got, f.out)
		}
	}
	hp := fmt.Sprintf("denied.test:%d", dp)
	wantBody := fmt.Sprintf("execgate: denied: connect %s: %s (%s)", hp, netDenyReason, locs.deny)
	if !strings.Contains(out, "body: "+wantBody+"\n") {
		t.Errorf("the 403 body: want %q\n%v", wantBody, r)
	}
	if !strings.Contains(out, "error socks reply 2") {
		t.Errorf("SOCKS5: want a refusal (reply 2, connection not allowed by ruleset)\n%v", r)
	}
	if !strings.Contains(out, "error ConnectionResetError") && !strings.Contains(out, "error ConnectionRefusedError") {
		t.Errorf("transparent: want the connection reset or refused\n%v", r)
	}
	if deny.Accepts() != 0 {
		t.Errorf("BYPASS: denied.test's server saw %d connections", deny.Accepts())
	}
	if se := string(r.stderr); strings.Count(se, "execgate: denied: ") < 3 || !strings.Contains(se, hp) || !strings.Contains(se, netDenyReason) || !strings.Contains(se, locs.deny) {
		t.Errorf("egsh's stderr: want the three denials of %s with reason and %s: %q", hp, locs.deny, se)
	}
	id, recs := runRecords(t, d, script, 5*time.Second, func(recs []*audit.Record) bool {
		return len(connRecords(recs, "disconnect")) >= 3 && len(connRecords(recs, "connect")) >= 6
	})
	if id == "" {
		t.Fatalf("no request record for the run")
	}
	for _, f := range flows {
		p := strconv.Itoa(f.port)
		c := connRecords(recs, "connect", audit.FieldHost, "allowed.test", audit.FieldPort, p)
		dc := connRecords(recs, "disconnect", audit.FieldHost, "allowed.test", audit.FieldPort, p)
		if len(c) != 1 || len(dc) != 1 {
			t.Errorf("%s: want one connect and one disconnect record for allowed.test:%s:%s", f.mode, p, describeRecs(recs))
			continue
		}
		cf, df := c[0].Fields, dc[0].Fields
		if cf[audit.FieldID] != id || cf[audit.FieldAgent] != "net" || cf[audit.FieldDecision] != "allow" || cf[audit.FieldProto] != f.proto ||
			cf[audit.FieldAddr] != "127.0.0.1:"+p || cf[audit.FieldRule] != locs.allow || cf[audit.FieldArgv] != `["connect","allowed.test:`+p+`"]` {
			t.Errorf("%s: connect record: want id %s, agent net, allow, proto %s, addr 127.0.0.1:%s, rule %s:%s", f.mode, id, f.proto, p, locs.allow, describeRecs(c))
		}
		if df[audit.FieldID] != id || df[audit.FieldAgent] != "net" || df[audit.FieldAddr] != "127.0.0.1:"+p ||
			df[audit.FieldBytesOut] != strconv.Itoa(f.out) || df[audit.FieldBytesIn] != strconv.Itoa(f.in) {
			t.Errorf("%s: disconnect record: want id %s, addr 127.0.0.1:%s, bytes out %d, in %d:%s", f.mode, id, p, f.out, f.in, describeRecs(dc))
		}
		if ms, err := strconv.Atoi(df[audit.FieldDurationMS]); err != nil || ms < 0 || ms > 60000 {
			t.Errorf("%s: disconnect EXECGATE_DURATION_MS = %q", f.mode, df[audit.FieldDurationMS])
		}
	}
	dn := connRecords(recs, "connect", audit.FieldHost, "denied.test", audit.FieldPort, strconv.Itoa(dp), audit.FieldDecision, "deny")
	protos := map[string]bool{}
	for _, dr := range dn {
		protos[dr.Fields[audit.FieldProto]] = true
		if dr.Fields[audit.FieldID] != id || dr.Fields[audit.FieldRule] != locs.deny || dr.Fields[audit.FieldReason] != netDenyReason || dr.Fields[audit.FieldAddr] != "" {
			t.Errorf("deny record: want id %s, rule %s, reason %q, no address:%s", id, locs.deny, netDenyReason, describeRecs([]*audit.Record{dr}))
		}
	}
	if len(dn) < 3 || !protos["http"] || !protos["socks5"] || !protos["transparent"] {
		t.Errorf("want deny records for %s by http, socks5 and transparent:%s", hp, describeRecs(recs))
	}
	if n := len(connRecords(recs, "disconnect", audit.FieldHost, "denied.test")); n != 0 {
		t.Errorf("%d disconnect records for refused connections", n)
	}
	// The short form.
	jo, code := d.execgate("journal", "--file", d.auditFile(), "--event", "connect")
	for _, re := range []string{
		`(?m)^\d\d:\d\d:\d\d net DENY connect ` + regexp.QuoteMeta(hp) + ` \[` + regexp.QuoteMeta(locs.deny) + `\]$`,
		fmt.Sprintf(`(?m)^\d\d:\d\d:\d\d net ALLOW connect allowed\.test:%d \[%s\]$`, flows[0].port, regexp.QuoteMeta(locs.allow)),
	} {
		if code != 0 || !regexp.MustCompile(re).MatchString(jo) {
			t.Errorf("execgate journal --event connect (exit %d): no line matching %s in:\n%.3000s", code, re, jo)
		}
	}
}

// netTestAsk: an ask rule holds the connection as a pending approval:
// approved, it goes through (the server sees one connection); rejected,
// the client gets a 403 and the server sees nothing more.
func netTestAsk(t *testing.T, e *netEnv, d *daemon, locs netLocs) {
	ctx := netCtx(t)
	srv := newNetServer("ask")
	srv.handle = reachedHandler("ask")
	port := srv.listen(t, e.gwNS, "tcp", "127.0.0.1:0")
	for _, verdict := range []string{"approve", "reject"} {
		script := fmt.Sprintf("curl -sS --max-time 30 -w ' HTTP %%{http_code}' http://ask.test:%d/ # %s", port, verdict)
		done := make(chan result, 1)
		go func() { done <- e.gated(ctx, d, script) }()
		var a struct{ ID, Rule string }
		waitFor(t, 20*time.Second, "a pending connect approval", func() bool {
			for _, p := range d.pendingNow(t) {
				if p.Agent == "net" && strings.Contains(fmt.Sprint(p.Invocations), fmt.Sprintf("ask.test:%d", port)) {
					a.ID, a.Rule = p.ID, p.Rule
					return true
				}
			}
			return false
		})
		if a.Rule != locs.ask {
			t.Errorf("pending approval cites %q, want %s", a.Rule, locs.ask)
		}
		if srv.Accepts() != map[string]int{"approve": 0, "reject": 1}[verdict] {
			t.Errorf("the connection reached the server before the human decided")
		}
		if out, code := d.execgate(verdict, a.ID); code != 0 {
			t.Errorf("%s %s: %d %s", verdict, a.ID, code, out)
		}
		r := <-done
		switch verdict {
		case "approve":
			if !strings.Contains(string(r.stdout), "REACHED") || srv.Accepts() != 1 {
				t.Errorf("approved: want the server reached once (%d)\n%v", srv.Accepts(), r)
			}
		case "reject":
			if strings.Contains(string(r.stdout), "REACHED") || !strings.Contains(string(r.stdout), "HTTP 403") || srv.Accepts() != 1 {
				t.Errorf("rejected: want a 403 and no new connection (%d in all)\n%v", srv.Accepts(), r)
			}
		}
	}
}

// holdServer greets each connection with "hello\n" and holds it until
// the client closes.
func newHoldServer(t *testing.T, e *netEnv) (*netServer, int) {
	s := newNetServer("hold")
	s.handle = func(c net.Conn) {
		defer c.Close()
		c.Write([]byte("hello\n"))
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		io.Copy(io.Discard, c)
	}
	return s, s.listen(t, e.gwNS, "tcp", "127.0.0.1:0")
}

// netTestLimitConns: limits.connections = 2: two held connections work,
// a third (transparent) and a fourth (CONNECT: 403 naming
// limits.connections) are refused and never reach the server; when one
// closes, a new one goes through. Without execgate the third connects.
func netTestLimitConns(t *testing.T, e *netEnv, d *daemon, loc string) {
	ctx := netCtx(t)
	srv, port := newHoldServer(t, e)
	script := fmt.Sprintf("/usr/bin/python3 %s/limits.py conns allowed.test %d", e.tools, port)
	r := e.ungated(ctx, script)
	if !strings.Contains(string(r.stdout), "c3 ok") {
		t.Fatalf("without execgate the third connection does not connect: the test proves nothing\n%v", r)
	}
	srv.reset()
	r = e.gated(ctx, d, script)
	out := string(r.stdout)
	for _, w := range []string{"c1 ok", "c2 ok", "c5 ok"} {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("want %q\n%v", w, r)
		}
	}
	if strings.Contains(out, "c3 ok") || !regexp.MustCompile(`(?m)^c3 (reset|refused|eof|error)`).MatchString(out) {
		t.Errorf("the third concurrent connection was not refused\n%v", r)
	}
	if !regexp.MustCompile(`(?m)^c4 HTTP/1\.[01] 403 .*connection limit reached: 2 concurrent connections \(` + regexp.QuoteMeta(loc) + `\)`).MatchString(out) {
		t.Errorf("the fourth (CONNECT) should get a 403 citing limits.connections at %s\n%v", loc, r)
	}
	if n := srv.Accepts(); n != 3 {
		t.Errorf("the server saw %d connections, want 3 (c1, c2, c5)", n)
	}
	_, recs := runRecords(t, d, script, 5*time.Second, func(recs []*audit.Record) bool {
		return len(connRecords(recs, "connect", audit.FieldRule, loc)) >= 2
	})
	lim := connRecords(recs, "connect", audit.FieldRule, loc, audit.FieldDecision, "deny")
	if len(lim) < 2 {
		t.Errorf("want at least 2 connect deny records citing limits.connections:%s", describeRecs(recs))
	}
	if n := len(connRecords(recs, "connect", audit.FieldDecision, "allow")); n != 3 {
		t.Errorf("%d allowed connections, want 3:%s", n, describeRecs(recs))
	}
}

// sinkServer counts what it receives; on EOF it answers "got N".
type sinkServer struct {
	*netServer
	mu    sync.Mutex
	total int
}

// netTestLimitEgress: limits.egress_bytes = 100000: while an idle
// connection of the run stays open (it sent nothing, so it uses none of
// the budget), a first connection sends 60000 bytes, a second is cut
// when the budget runs out, a third and a CONNECT (403 naming
// limits.egress_bytes) are refused; the server receives at most 100000
// bytes. A new run has a budget of its own. Without execgate all 120010
// bytes arrive.
func netTestLimitEgress(t *testing.T, e *netEnv, d *daemon, loc string) {
	ctx := netCtx(t)
	s := &sinkServer{netServer: newNetServer("sink")}
	s.handle = func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		s.mu.Lock()
		s.total += int(n)
		s.mu.Unlock()
		fmt.Fprintf(c, "got %d\n", n)
	}
	port := s.listen(t, e.gwNS, "tcp", "127.0.0.1:0")
	total := func() int { s.mu.Lock(); defer s.mu.Unlock(); return s.total }
	hold, hp := newHoldServer(t, e)
	script := fmt.Sprintf("/usr/bin/python3 %s/limits.py egress allowed.test %d 60000 %d", e.tools, port, hp)
	r := e.ungated(ctx, script)
	if total() != 120010 {
		t.Fatalf("without execgate the server got %d bytes, want 120010: the test proves nothing\n%v", total(), r)
	}
	s.mu.Lock()
	s.total = 0
	s.mu.Unlock()
	hold.reset()
	r = e.gated(ctx, d, script)
	out := string(r.stdout)
	if !strings.Contains(out, "idle ok\n") || hold.Accepts() != 1 {
		t.Errorf("the idle connection should be open (%d connections)\n%v", hold.Accepts(), r)
	}
	if !strings.Contains(out, "a got 60000\n") {
		t.Errorf("the first 60000 bytes should pass (an idle connection of the run sent nothing)\n%v", r)
	}
	if strings.Contains(out, "b got 60000") || strings.Contains(out, "c got 10") {
		t.Errorf("bytes beyond the budget passed\n%v", r)
	}
	if !regexp.MustCompile(`(?m)^d HTTP/1\.[01] 403 .*egress limit reached: 100000 of 100000 bytes sent \(` + regexp.QuoteMeta(loc) + `\)`).MatchString(out) {
		t.Errorf("a CONNECT after the budget should get a 403 citing limits.egress_bytes at %s\n%v", loc, r)
	}
	if n := total(); n > 100000 || n < 60000 {
		t.Errorf("the server received %d bytes; the budget is 100000", n)
	}
	_, recs := runRecords(t, d, script, 5*time.Second, func(recs []*audit.Record) bool {
		return len(connRecords(recs, "connect", audit.FieldRule, loc)) >= 2
	})
	if len(connRecords(recs, "connect", audit.FieldRule, loc, audit.FieldDecision, "deny")) < 2 {
		t.Errorf("want connect deny records citing limits.egress_bytes (c and d):%s", describeRecs(recs))
	}
	// The budget is per run.
	before := total()
	script2 := fmt.Sprintf("/usr/bin/python3 %s/netc.py direct allowed.test %d --send 60000", e.tools, port)
	r = e.gated(ctx, d, script2)
	if !strings.Contains(string(r.stdout), "got 60000") || total()-before != 60000 {
		t.Errorf("a new run should have a budget of its own\n%v", r)
	}
}
