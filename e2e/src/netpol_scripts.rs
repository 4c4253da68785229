//! The Python programs the NetworkPolicy matrix runs inside pods: a
//! server answering on several TCP and UDP ports, a prober that tries many
//! targets at once, a looping prober, and a pod that misbehaves from its
//! first instant. Kept apart from [`crate::netpol_matrix`] so the Rust
//! reads without them.

/// A server: `argv[1]` is the name it answers with, the rest `tcp/PORT` or
/// `udp/PORT` to listen on (both families: `::` with V6ONLY off). A TCP
/// connection gets the name and is closed; a datagram gets the name back.
pub const SERVER: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode()
def tcp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(256)
    while True:
        c, _ = s.accept()
        try: c.sendall(name)
        except OSError: pass
        c.close()
def udp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        d, a = s.recvfrom(2048)
        try: s.sendto(name, a)
        except OSError: pass
ts = []
for spec in sys.argv[2:]:
    proto, port = spec.split("/")
    t = threading.Thread(target=tcp if proto == "tcp" else udp, args=(int(port),), daemon=True)
    t.start(); ts.append(t)
for t in ts: t.join()
"#;

/// Probes every target on stdin (`KEY PROTO IP PORT` a line) at once, one
/// thread each, `argv[1]` seconds each; prints `KEY ok NAME` or `KEY fail`.
pub const PROBER: &str = r#"
import socket, sys, threading
timeout = float(sys.argv[1])
out = []
lock = threading.Lock()
def one(key, proto, ip, port):
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    res = "fail"
    try:
        if proto == "tcp":
            s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(timeout)
            s.connect((ip, port)); data = s.recv(2048)
        else:
            s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(timeout)
            s.sendto(b"probe", (ip, port)); data, _ = s.recvfrom(2048)
        s.close()
        if data: res = "ok " + data.decode(errors="replace")
    except OSError:
        pass
    with lock: out.append(key + " " + res)
ts = []
for line in sys.stdin:
    f = line.split()
    if len(f) != 4: continue
    t = threading.Thread(target=one, args=(f[0], f[1], f[2], int(f[3])))
    t.start(); ts.append(t)
for t in ts: t.join()
sys.stdout.write("\n".join(out) + "\n")
"#;

/// Loops forever over targets `argv[4:]` on `argv[1]` (tcp/udp) port
/// `argv[2]`, each round waiting at most `argv[3]` seconds for answers;
/// prints `r` after every round and `ok IP NAME` for every answer, so a
/// single answer in thousands of attempts is seen.
pub const LOOPER: &str = r#"
import select, socket, sys, time
proto, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ips = sys.argv[4:]
def fam(ip): return socket.AF_INET6 if ":" in ip else socket.AF_INET
while True:
    socks = {}
    for ip in ips:
        try:
            if proto == "udp":
                s = socket.socket(fam(ip), socket.SOCK_DGRAM); s.setblocking(False)
                s.sendto(b"loop", (ip, port))
            else:
                s = socket.socket(fam(ip), socket.SOCK_STREAM); s.setblocking(False)
                s.connect_ex((ip, port))
            socks[s] = ip
        except OSError:
            pass
    end = time.monotonic() + timeout
    pending = dict(socks)
    while pending:
        left = end - time.monotonic()
        if left <= 0: break
        if proto == "udp":
            r, _, _ = select.select(list(pending), [], [], left)
        else:
            _, r, _ = select.select([], list(pending), [], left)
        for s in r:
            ip = pending.pop(s)
            try:
                if proto == "udp":
                    d, _ = s.recvfrom(2048)
                else:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0: continue
                    s.setblocking(True); s.settimeout(max(0.05, end - time.monotonic()))
                    d = s.recv(2048)
                sys.stdout.write("ok " + ip + " " + d.decode(errors="replace") + "\n")
            except OSError:
                pass
    for s in socks: s.close()
    sys.stdout.write("r\n"); sys.stdout.flush()
    if not socks: time.sleep(timeout)
"#;

/// A pod that misbehaves from its first instant: `argv[1]` a log file,
/// `argv[2]` its name, `argv[3]`/`argv[4]` a TCP destination it connects to
/// in a tight loop. It serves UDP and TCP on port 80 and logs every
/// inbound datagram or connection (`in udp|tcp SOURCE`), every outbound
/// attempt (`out fail`) and success (`out ok`).
pub const EAGER: &str = r#"
import socket, sys, threading
log = open(sys.argv[1], "a", buffering=1)
name, ip, port = sys.argv[2].encode(), sys.argv[3], int(sys.argv[4])
lock = threading.Lock()
def w(s):
    with lock: log.write(s + "\n")
def udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 80))
    while True:
        d, a = s.recvfrom(2048)
        w("in udp " + a[0]); s.sendto(name, a)
def tcp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", 80)); s.listen(64)
    while True:
        c, a = s.accept()
        w("in tcp " + a[0])
        try: c.sendall(name)
        except OSError: pass
        c.close()
threading.Thread(target=udp, daemon=True).start()
threading.Thread(target=tcp, daemon=True).start()
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
while True:
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(0.2)
    try:
        s.connect((ip, port)); s.recv(64); w("out ok")
    except OSError:
        w("out fail")
        import time; time.sleep(0.02)
    s.close()
"#;
