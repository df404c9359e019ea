package integration

// The client programs the network tests run inside a run (and without
// execgate), written to the environment's tools/ directory. Each prints
// one line per attempt ("recv N HEAD", "error KIND MESSAGE") and exits 0
// only when it got data back.

var netTools = map[string]string{
	"netc.py": `#!/usr/bin/python3
"""netc.py MODE HOST PORT [--send N] [--proxy HOST:PORT]

MODE: direct (socket.create_connection), fastopen (sendto MSG_FASTOPEN),
connect (HTTP CONNECT through --proxy or $HTTP_PROXY), socks5 (SOCKS5
through --proxy or $ALL_PROXY; literals as addresses, names as domains),
socks5d (SOCKS5 with the host always sent as a domain).
--send N sends N bytes of 'x' and half-closes; without it an HTTP GET."""
import argparse, os, signal, socket, sys

signal.alarm(20)
ap = argparse.ArgumentParser()
ap.add_argument("mode")
ap.add_argument("host")
ap.add_argument("port", type=int)
ap.add_argument("--send", type=int, default=-1)
ap.add_argument("--proxy", default="")
ap.add_argument("--timeout", type=float, default=8)
a = ap.parse_args()

def fail(kind, msg):
    print("error", kind, msg, flush=True)
    sys.exit(1)

def proxy_addr(env):
    p = a.proxy or os.environ.get(env, "")
    p = p.split("://")[-1].rstrip("/")
    h, _, port = p.rpartition(":")
    return h.strip("[]"), int(port)

def recvn(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            fail("eof", "proxy closed after %d bytes" % len(b))
        b += c
    return b

def hostport(h, p):
    return "[%s]:%d" % (h, p) if ":" in h else "%s:%d" % (h, p)

if a.send < 0:
    payload = ("GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % hostport(a.host, a.port)).encode()
else:
    payload = b"x" * a.send

try:
    if a.mode == "direct":
        s = socket.create_connection((a.host, a.port), timeout=a.timeout)
        s.sendall(payload)
    elif a.mode == "fastopen":
        # Blocking: sendto connects (SYN, with the data when a TFO cookie
        # is known) and returns once the data is sent.
        fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.sendto(payload, socket.MSG_FASTOPEN, (a.host, a.port))
        s.settimeout(a.timeout)
    elif a.mode == "connect":
        s = socket.create_connection(proxy_addr("HTTP_PROXY"), timeout=a.timeout)
        hp = hostport(a.host, a.port)
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (hp, hp)).encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            c = s.recv(1)
            if not c:
                break
            resp += c
        status = resp.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 200" not in status:
            body = b""
            try:
                while True:
                    c = s.recv(4096)
                    if not c:
                        break
                    body += c
            except OSError:
                pass
            fail("proxy", status + " " + body.decode(errors="replace").strip())
        s.sendall(payload)
    elif a.mode in ("socks5", "socks5d"):
        s = socket.create_connection(proxy_addr("ALL_PROXY"), timeout=a.timeout)
        s.sendall(b"\x05\x01\x00")
        if recvn(s, 2) != b"\x05\x00":
            fail("socks", "no auth refused")
        addr = None
        if a.mode == "socks5":
            for fam, atyp in ((socket.AF_INET, 1), (socket.AF_INET6, 4)):
                try:
                    addr = bytes([atyp]) + socket.inet_pton(fam, a.host)
                    break
                except OSError:
                    pass
        if addr is None:
            addr = b"\x03" + bytes([len(a.host)]) + a.host.encode()
        s.sendall(b"\x05\x01\x00" + addr + a.port.to_bytes(2, "big"))
        rep = recvn(s, 4)
        if rep[1] != 0:
            fail("socks", "reply %d" % rep[1])
        recvn(s, {1: 4, 4: 16}.get(rep[3], 0) + 2 if rep[3] != 3 else recvn(s, 1)[0] + 2)
        s.sendall(payload)
    else:
        fail("usage", a.mode)
    if a.send >= 0:
        s.shutdown(socket.SHUT_WR)
    n, head = 0, b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        n += len(c)
        if len(head) < 400:
            head += c[:400 - len(head)]
    print("recv", n, head.decode(errors="replace").replace("\r", " ").replace("\n", " ").strip(), flush=True)
    sys.exit(0 if n > 0 else 1)
except socket.timeout as e:
    fail("timeout", str(e))
except OSError as e:
    fail(type(e).__name__, str(e))
`,

	"udp.py": `#!/usr/bin/python3
"""udp.py HOST PORT [COUNT]: sends COUNT datagrams and waits for an echo."""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 3
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(1.5)
sent = 0
for i in range(count):
    try:
        s.sendto(b"datagram %d" % i, (host, port))
        sent += 1
    except OSError as e:
        print("send error", type(e).__name__, e)
try:
    d, src = s.recvfrom(4096)
    print("recv", d.decode(errors="replace"))
    sys.exit(0)
except OSError as e:
    print("sent", sent, "no echo:", type(e).__name__, e)
    sys.exit(1)
`,

	"relay.py": `#!/usr/bin/python3
"""relay.py [--chain]: an HTTP proxy on 127.0.0.1 (CONNECT and absolute
form), its port written to /tmp/relay.port. It dials each destination
itself, or through $HTTP_PROXY with --chain."""
import os, socket, sys, threading
chain = "--chain" in sys.argv
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(16)
with open("/tmp/relay.port.tmp", "w") as f:
    f.write(str(l.getsockname()[1]))
os.rename("/tmp/relay.port.tmp", "/tmp/relay.port")

def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def handle(c):
    try:
        h = b""
        while b"\r\n\r\n" not in h:
            d = c.recv(4096)
            if not d:
                return
            h += d
        line = h.split(b"\r\n", 1)[0].decode()
        method, target = line.split()[:2]
        if method == "CONNECT":
            hp = target
        else:
            hp = target.split("://", 1)[1].split("/", 1)[0]
            if ":" not in hp:
                hp += ":80"
        host, _, port = hp.rpartition(":")
        if chain:
            p = os.environ["HTTP_PROXY"].split("://")[-1].rstrip("/")
            ph, _, pp = p.rpartition(":")
            up = socket.create_connection((ph, int(pp)), timeout=8)
            up.sendall(h)
        else:
            up = socket.create_connection((host.strip("[]"), int(port)), timeout=8)
            if method == "CONNECT":
                c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                rest = h.split(b"\r\n\r\n", 1)[1]
                if rest:
                    up.sendall(rest)
            else:
                up.sendall(h)
        t = threading.Thread(target=pipe, args=(c, up), daemon=True)
        t.start()
        pipe(up, c)
        t.join(5)
    except Exception as e:
        try:
            c.sendall(("HTTP/1.1 502 relay: %s\r\nConnection: close\r\n\r\n" % e).encode())
        except OSError:
            pass
    finally:
        c.close()

while True:
    c, _ = l.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
`,

	"loop.py": `#!/usr/bin/python3
"""loop.py NAME PORT [SKIP]: asks every TCP listener of this network namespace's
loopback (DNS excepted) for NAME:PORT: as an HTTP proxy (absolute form
and CONNECT), as a SOCKS5 proxy, and as a plain server. Exit 0 if any
answer came from the destination (REACHED)."""
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
skip = {53} | {int(p) for p in sys.argv[3:]}
ports = set()
for path, fam in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
    try:
        lines = open(path).read().splitlines()[1:]
    except OSError:
        continue
    for l in lines:
        f = l.split()
        local, state = f[1], f[3]
        if state != "0A":
            continue
        ip, p = local.split(":")
        p = int(p, 16)
        if fam == socket.AF_INET and ip in ("0100007F", "00000000") or fam == socket.AF_INET6 and ip in ("00000000000000000000000001000000", "00000000000000000000000000000000"):
            if p not in skip:
                ports.add(p)

def ask(p, data, socks=False):
    try:
        s = socket.create_connection(("127.0.0.1", p), timeout=1.5)
        if socks:
            s.sendall(b"\x05\x01\x00")
            if s.recv(2) != b"\x05\x00":
                return b""
            s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name.encode() + port.to_bytes(2, "big"))
            r = s.recv(10)
            if len(r) < 2 or r[1] != 0:
                return b""
            data = b"GET / HTTP/1.0\r\n\r\n"
        s.sendall(data)
        got = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
        return got
    except OSError as e:
        return ("error %s" % e).encode()

reached = False
hp = "%s:%d" % (name, port)
for p in sorted(ports):
    for how, data, socks in (
        ("absolute", ("GET http://%s/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (hp, hp)).encode(), False),
        ("connect", ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nGET / HTTP/1.0\r\n\r\n" % (hp, hp)).encode(), False),
        ("socks5", b"", True),
    ):
        got = ask(p, data, socks)
        print(p, how, got[:100])
        if b"REACHED" in got:
            reached = True
sys.exit(0 if reached else 1)
`,

	"override.py": `#!/usr/bin/python3
"""override.py IP PORT: overrides Python's resolver so that allowed.test
is IP, then fetches http://allowed.test:PORT/ without a proxy."""
import socket, sys, urllib.request
real = socket.getaddrinfo
def fake(host, *a, **k):
    if host == "allowed.test":
        host = sys.argv[1]
    return real(host, *a, **k)
socket.getaddrinfo = fake
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
print(opener.open("http://allowed.test:%s/" % sys.argv[2], timeout=8).read().decode())
`,

	"limits.py": `#!/usr/bin/python3
"""limits.py conns HOST PORT | egress HOST PORT SIZE HOLDPORT: the limit tests' client."""
import os, socket, sys, time

def proxy(env):
    p = os.environ.get(env, "").split("://")[-1].rstrip("/")
    h, _, port = p.rpartition(":")
    return h, int(port)

def hello(s):
    s.settimeout(4)
    d = s.recv(6)
    return d == b"hello\n"

def outcome(f):
    try:
        return f()
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return "error %s" % e

def via_connect(host, port, payload=b""):
    s = socket.create_connection(proxy("HTTP_PROXY"), timeout=5)
    hp = "%s:%d" % (host, port)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (hp, hp)).encode())
    got = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
        if b" 200 " in got.split(b"\r\n", 1)[0] and b"\r\n\r\n" in got:
            break
    return got.decode(errors="replace").replace("\r\n", " | ")

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "conns":
    held = []
    for i in (1, 2):
        s = socket.create_connection((host, port), timeout=5)
        print("c%d" % i, "ok" if hello(s) else "no hello", flush=True)
        held.append(s)
    def third():
        s = socket.create_connection((host, port), timeout=5)
        return "ok" if hello(s) else "eof"
    print("c3", outcome(third), flush=True)
    print("c4", outcome(lambda: via_connect(host, port)), flush=True)
    held[0].close()
    res = "never"
    for i in range(40):
        res = outcome(third)
        if res == "ok":
            break
        time.sleep(0.1)
    print("c5", res, flush=True)
else:
    size = int(sys.argv[4])
    idle = socket.create_connection((host, int(sys.argv[5])), timeout=5)
    print("idle", "ok" if hello(idle) else "no hello", flush=True)
    def send(n):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"x" * n)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
        return got.decode().strip() or "eof"
    print("a", outcome(lambda: send(size)), flush=True)
    print("b", outcome(lambda: send(size)), flush=True)
    print("c", outcome(lambda: send(10)), flush=True)
    print("d", outcome(lambda: via_connect(host, port)), flush=True)
`,

	"rebind.py": `#!/usr/bin/python3
"""rebind.py NAME PORT GOOD: the time-of-check attack: resolve NAME until
it is GOOD (the check), then connect by name (which resolves again)."""
import socket, sys
name, port, good = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(6):
    ip = socket.gethostbyname(name)
    print("check", ip, flush=True)
    if ip != good:
        continue
    try:
        s = socket.create_connection((name, port), timeout=5)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        print("got", s.recv(200).decode(errors="replace").replace("\r\n", " "), flush=True)
    except OSError as e:
        print("error", type(e).__name__, e, flush=True)
`,

	"wait.py": `#!/usr/bin/python3
"""wait.py FLAG: waits (up to 20 s) for the file FLAG to exist."""
import os, sys, time
for i in range(400):
    if os.path.exists(sys.argv[1]):
        sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
`,
}
