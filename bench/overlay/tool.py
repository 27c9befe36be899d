#!/usr/bin/env python3
"""Helpers for bench/overlay.sh (standard library only).

  tool.py echo ADDR:PORT                 an echo origin (asyncio); runs until killed
  tool.py connects ADDR:PORT N           N sequential connect + 1-byte echo + close; JSON timings
  tool.py idle ADDR:PORT N PID[,PID...]  open N flows, prove each end to end with a 1-byte echo,
                                         hold them idle, read VmRSS of the PIDs before/after; JSON
                                         (ECHO_FIRST=0: connect only, no byte moved; SETTLE, BATCH)
  tool.py iperf FILE                     bits/s received from an `iperf3 -J` report; JSON
  tool.py wrk FILE                       req/s, p50, p99 (µs) and errors from `wrk --latency`; JSON
  tool.py report FILE                    the figures table from PATH<TAB>KEY<TAB>JSON lines

Every loop is bounded in count and in time (DEADLINE seconds, default 120).
"""
import asyncio
import json
import os
import re
import selectors
import socket
import sys
import time

DEADLINE = float(os.environ.get("DEADLINE", "120"))


def hostport(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def echo(addr):
    host, port = hostport(addr)

    async def handle(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except OSError:
                pass

    async def main():
        server = await asyncio.start_server(handle, host, port, backlog=4096, reuse_address=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def connects(addr, n):
    host, port = hostport(addr)
    n = int(n)
    times = []
    errors = 0
    end = time.monotonic() + DEADLINE
    t_all = time.perf_counter()
    for _ in range(n):
        if time.monotonic() > end:
            break
        t0 = time.perf_counter_ns()
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise OSError("no echo")
            s.close()
            times.append((time.perf_counter_ns() - t0) / 1000.0)
        except OSError:
            errors += 1
    wall = time.perf_counter() - t_all
    times.sort()
    print(json.dumps({
        "n": len(times), "errors": errors,
        "p50_us": pct(times, 50), "p99_us": pct(times, 99),
        "mean_us": sum(times) / len(times) if times else None,
        "per_s": len(times) / wall if wall > 0 else None,
    }))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def idle(addr, n, pids):
    """Open n flows at most BATCH at a time, each proven by a 1-byte echo."""
    host, port = hostport(addr)
    n = int(n)
    pids = [int(p) for p in pids.split(",") if p]
    settle = float(os.environ.get("SETTLE", "3"))
    batch = int(os.environ.get("BATCH", "200"))
    before = {p: rss_kib(p) for p in pids}
    sel = selectors.DefaultSelector()
    socks = []
    ok = 0
    failed = 0
    end = time.monotonic() + DEADLINE
    t0 = time.monotonic()
    while len(socks) + failed < n and time.monotonic() < end:
        pending = {}
        for _ in range(min(batch, n - len(socks) - failed)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((host, port))
            if err not in (0, 115):  # EINPROGRESS
                failed += 1
                s.close()
                continue
            pending[s.fileno()] = s
            sel.register(s, selectors.EVENT_WRITE, "connect")
        # Drive this batch: connect -> send 1 byte -> read it back.
        batch_end = min(end, time.monotonic() + 30)
        while pending and time.monotonic() < batch_end:
            for key, ev in sel.select(timeout=0.5):
                s = key.fileobj
                if key.data == "connect":
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                        sel.unregister(s); pending.pop(s.fileno()); s.close(); failed += 1
                        continue
                    if os.environ.get("ECHO_FIRST", "1") == "0":
                        # connected only: the relays hold the flow but have moved no byte
                        sel.unregister(s); pending.pop(s.fileno()); ok += 1; socks.append(s)
                        continue
                    try:
                        s.send(b"x")
                    except OSError:
                        sel.unregister(s); pending.pop(s.fileno()); s.close(); failed += 1
                        continue
                    sel.modify(s, selectors.EVENT_READ, "echo")
                else:
                    try:
                        d = s.recv(1)
                    except OSError:
                        d = b""
                    sel.unregister(s)
                    pending.pop(s.fileno())
                    if d == b"x":
                        ok += 1
                        socks.append(s)
                    else:
                        failed += 1
                        s.close()
        for s in list(pending.values()):
            sel.unregister(s); s.close(); failed += 1
    open_s = time.monotonic() - t0
    time.sleep(settle)
    after = {p: rss_kib(p) for p in pids}
    # Prove the flows still carry bytes after idling: echo on every 100th.
    alive = 0
    for s in socks[::100]:
        try:
            s.setblocking(True)
            s.settimeout(5)
            s.sendall(b"y")
            if s.recv(1) == b"y":
                alive += 1
        except OSError:
            pass
    for s in socks:
        s.close()
    print(json.dumps({
        "flows": ok, "failed": failed, "open_s": open_s,
        "probed": len(socks[::100]), "alive": alive,
        "rss_before_kib": before, "rss_after_kib": after,
    }))


def iperf(path):
    try:
        with open(path) as f:
            r = json.load(f)
        bps = r["end"]["sum_received"]["bits_per_second"]
        nbytes = r["end"]["sum_received"]["bytes"]
        retr = r["end"].get("sum_sent", {}).get("retransmits")
        print(json.dumps({"bps": bps, "bytes": nbytes, "retransmits": retr}))
    except (OSError, ValueError, KeyError) as e:
        print(json.dumps({"bps": None, "error": str(e)}))


UNIT_US = {"us": 1.0, "ms": 1000.0, "s": 1e6, "m": 6e7}


def to_us(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m.group(1)) * UNIT_US[m.group(2)] if m else None


def wrk(path):
    text = open(path, errors="replace").read()
    out = {"rps": None, "p50_us": None, "p99_us": None, "errors": 0, "non2xx": 0, "requests": None}
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    for p, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(r"^\s*" + p + r"%\s+(\S+)", text, re.M)
        if m:
            out[key] = to_us(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] = sum(int(x) for x in m.groups())
        out["error_detail"] = m.group(0)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    print(json.dumps(out))


PATHS = ["direct", "fedgate", "fedgate-tcp", "stunnel", "haproxy", "plain"]
PEERS = ["direct", "stunnel", "haproxy", "plain"]


def report(path):
    """Print the figures of a results file (PATH<TAB>KEY<TAB>JSON lines)."""
    runs = {}
    with open(path) as f:
        for line in f:
            p, key, js = line.rstrip("\n").split("\t", 2)
            try:
                v = json.loads(js)
            except ValueError:
                v = {}
            runs.setdefault(p, {}).setdefault(key, []).append(v)
    # A key measured in several rounds (ROUNDS=N) is reported as the median
    # of each field over its rounds; `res` holds the last round's record for
    # what is not a figure (errors, idle flow counts).
    res = {p: {k: v[-1] for k, v in keys.items()} for p, keys in runs.items()}

    def median(vals):
        vals = sorted(v for v in vals if v is not None)
        if not vals:
            return None
        mid = len(vals) // 2
        return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2

    def series(p, key, field):
        return [r.get(field) for r in runs.get(p, {}).get(key, [])]

    def get(p, key, field, scale=1.0):
        v = median(series(p, key, field))
        return None if v is None else v * scale

    def idle_per_flow(p, side):
        r = res.get(p, {}).get("idle", {})
        flows = r.get("flows") or 0
        before, after = r.get("rss_before_kib") or {}, r.get("rss_after_kib") or {}
        pids = list(before.keys())
        if flows <= 0 or len(pids) < 2:
            return None
        chosen = pids if side == "both" else [pids[0 if side == "b" else 1]]
        try:
            return sum(after[k] - before[k] for k in chosen) / flows
        except (KeyError, TypeError):
            return None

    def cpu_per_gb(p, key):
        c = get(p, "cpu_" + key, "cpu_s")
        b = get(p, key, "bytes")
        return None if p == "direct" or c is None or not b else c / (b / 1e9)

    def cpu_per_req(p, key):
        if p == "direct":
            return None
        pairs = zip(series(p, "cpu_" + key, "cpu_s"), series(p, key, "requests"))
        return median([c * 1e6 / n for c, n in pairs if c is not None and n])

    many, low = os.environ.get("NC_CONNS", "32"), os.environ.get("NC_LOW", "2")
    rows = [
        # label, getter, format, lower is better
        ("bulk, iperf3 -P 1 (Gbit/s)", lambda p: get(p, "bulk_p1", "bps", 1e-9), "{:.2f}", False),
        ("bulk, iperf3 -P 8 (Gbit/s)", lambda p: get(p, "bulk_p8", "bps", 1e-9), "{:.2f}", False),
        ("keep-alive req/s", lambda p: get(p, "wrk_ka", "rps"), "{:,.0f}", False),
        ("keep-alive p50 (ms)", lambda p: get(p, "wrk_ka", "p50_us", 1e-3), "{:.3f}", True),
        ("keep-alive p99 (ms)", lambda p: get(p, "wrk_ka", "p99_us", 1e-3), "{:.3f}", True),
        ("new-connection req/s", lambda p: get(p, "wrk_nc", "rps"), "{:,.0f}", False),
        ("new-connection p50 (ms)", lambda p: get(p, "wrk_nc", "p50_us", 1e-3), "{:.3f}", True),
        ("new-connection p99 (ms)", lambda p: get(p, "wrk_nc", "p99_us", 1e-3), "{:.3f}", True),
        (f"new-conn req/s, {low} at once", lambda p: get(p, "wrk_nclow", "rps"), "{:,.0f}", False),
        (f"new-conn p50 (ms), {low} at once", lambda p: get(p, "wrk_nclow", "p50_us", 1e-3), "{:.3f}", True),
        (f"new-conn p99 (ms), {low} at once", lambda p: get(p, "wrk_nclow", "p99_us", 1e-3), "{:.3f}", True),
        ("connect+1B echo p50 (ms)", lambda p: get(p, "connects", "p50_us", 1e-3), "{:.3f}", True),
        ("connect+1B echo p99 (ms)", lambda p: get(p, "connects", "p99_us", 1e-3), "{:.3f}", True),
        ("idle RSS/flow, both sides (KiB)", lambda p: idle_per_flow(p, "both"), "{:.1f}", True),
        ("idle RSS/flow, side B (KiB)", lambda p: idle_per_flow(p, "b"), "{:.1f}", True),
        ("idle RSS/flow, side A (KiB)", lambda p: idle_per_flow(p, "a"), "{:.1f}", True),
        ("relay CPU s per GB, -P 1", lambda p: cpu_per_gb(p, "bulk_p1"), "{:.2f}", True),
        ("relay CPU s per GB, -P 8", lambda p: cpu_per_gb(p, "bulk_p8"), "{:.2f}", True),
        ("relay CPU us/request, keep-alive", lambda p: cpu_per_req(p, "wrk_ka"), "{:.0f}", True),
        ("relay CPU us/request, new conn", lambda p: cpu_per_req(p, "wrk_nc"), "{:.0f}", True),
    ]
    row = {label: g for label, g, _, _ in rows}

    def fmt(v, f):
        return "-" if v is None else f.format(v)

    def ratio(a, b):
        return "-" if a is None or b in (None, 0) else "{:.2f}x".format(a / b)

    head = ["figure"] + PATHS + ["fg/" + p for p in PEERS]
    table = [head]
    for label, g, f, _ in rows:
        vals = {p: g(p) for p in PATHS}
        table.append([label] + [fmt(vals[p], f) for p in PATHS]
                     + [ratio(vals["fedgate"], vals[p]) for p in PEERS])
    extra = []
    for p in PATHS:
        e = [f"{k} errors {res.get(p, {}).get(k, {}).get('errors')}" for k in ("wrk_ka", "wrk_nc", "wrk_nclow")
             if res.get(p, {}).get(k, {}).get("errors")]
        for k in ("wrk_ka", "wrk_nc", "wrk_nclow"):
            n = res.get(p, {}).get(k, {}).get("non2xx")
            if n:
                e.append(f"{k} non-2xx {n}")
        i = res.get(p, {}).get("idle")
        if i:
            e.append(f"idle flows {i.get('flows')} opened in {i.get('open_s', 0):.1f} s, "
                     f"{i.get('failed')} failed, {i.get('alive')}/{i.get('probed')} alive after idling")
        ig = res.get(p, {}).get("integrity")
        if ig is not None:
            e.append("32 MiB sha256 " + ("ok" if ig.get("ok") else "MISMATCH"))
        c = res.get(p, {}).get("connects")
        if c and c.get("errors"):
            e.append(f"connect errors {c['errors']}")
        lo = res.get(p, {}).get("leftover")
        if lo:
            e.append(f"flows still open after every client left: visited {lo.get('visited')}, home {lo.get('home')}")
        extra.append(f"  {p}: " + "; ".join(e))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for n, r in enumerate(table):
        print("  " + "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print("\n  fg/X = fedgate's figure divided by X's: above 1 is better for throughput and")
    print("  req/s, below 1 is better for latency and RSS.\n")
    print("\n".join(extra))

    # Targets, against the better of the two TLS pairs.
    print("\n  targets (fedgate against the better of stunnel and haproxy):")

    def best(g, lower):
        vs = [(g(p), p) for p in ("stunnel", "haproxy") if g(p) is not None]
        if not vs:
            return None, None
        return (min if lower else max)(vs)

    def line(label, g, lower, target_text):
        fg = g("fedgate")
        b, who = best(g, lower)
        r = ratio(fg, b)
        rt = ratio(g("fedgate-tcp"), b)
        print(f"    {label:<26} fedgate {fmt(fg, '{:.3f}'):>10} vs {who or '-'} {fmt(b, '{:.3f}'):>10}: {r:>7}"
              f"  (fedgate-tcp {rt:>6})  target {target_text}")

    line("bulk -P 1 (Gbit/s)", row["bulk, iperf3 -P 1 (Gbit/s)"], False, ">= 1.30x")
    line("bulk -P 8 (Gbit/s)", row["bulk, iperf3 -P 8 (Gbit/s)"], False, ">= 1.30x")
    line("keep-alive req/s", row["keep-alive req/s"], False, ">= 1.20x")
    line(f"new-conn req/s, {many} at once", row["new-connection req/s"], False, ">= 5.00x")
    line(f"new-conn req/s, {low} at once", row[f"new-conn req/s, {low} at once"], False, ">= 5.00x")
    line("keep-alive p99 (ms)", row["keep-alive p99 (ms)"], True, "<= 1.00x (no worse)")

    # With ROUNDS=N, each round's ratio against that round's better pair:
    # the pairs and fedgate drift together on a shared machine, so a
    # round's ratio moves less than the figures do.
    def per_round(key, field, lower):
        fg = series("fedgate", key, field)
        if len(fg) < 2:
            return
        peers = [series(p, key, field) for p in ("stunnel", "haproxy")]
        out = []
        for i, v in enumerate(fg):
            vs = [s[i] for s in peers if i < len(s) and s[i]]
            out.append(None if v is None or not vs else v / (min(vs) if lower else max(vs)))
        shown = " ".join("-" if r is None else f"{r:.2f}x" for r in out)
        print(f"      {key} {field}, each round: {shown}; median {ratio(median(out), 1.0)}")

    for key, field, lower in (("wrk_ka", "rps", False), ("wrk_ka", "p99_us", True),
                              ("wrk_nc", "rps", False), ("wrk_nc", "p99_us", True),
                              ("wrk_nclow", "rps", False), ("wrk_nclow", "p99_us", True)):
        per_round(key, field, lower)
    c99 = row["connect+1B echo p99 (ms)"]("fedgate")
    rss = row["idle RSS/flow, both sides (KiB)"]("fedgate")
    rss_b, rss_a = row["idle RSS/flow, side B (KiB)"]("fedgate"), row["idle RSS/flow, side A (KiB)"]("fedgate")
    rss_edge = max(rss_b, rss_a) if rss_b is not None and rss_a is not None else None
    for conns, label in ((many, "new-connection p99 (ms)"), (low, f"new-conn p99 (ms), {low} at once")):
        nc99 = row[label]("fedgate")
        print(f"    {'new-connection p99, wrk':<26} fedgate {fmt(nc99, '{:.3f}'):>10} ms ({conns:>2} connections at once)       target < 1 ms: {ratio(nc99, 1.0)} of it")
    print(f"    {'connect+echo p99, serial':<26} fedgate {fmt(c99, '{:.3f}'):>10} ms (one at a time)                target < 1 ms: {ratio(c99, 1.0)} of it")
    print(f"    {'idle RSS/flow, worse edge':<26} fedgate {fmt(rss_edge, '{:.1f}'):>10} KiB (both edges: {fmt(rss, '{:.1f}')} KiB)           target < 32 KiB on each edge: {ratio(rss_edge, 32.0)} of it")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"echo": echo, "connects": connects, "idle": idle, "iperf": iperf, "wrk": wrk, "report": report}[cmd](*args)
