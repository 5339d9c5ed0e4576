#!/usr/bin/env python3
"""Migration benchmark over the e2e harness (docs/benchmark.md).

Runs a matrix of live migrations (workload x link x method x repeat) between
two local QEMUs with harness/migrate.py's machinery, compares the whole guest
RAM after every completed migration, and writes

    <out>/migration[-nonconv]-<link-mode>.csv       one row per migration
    <out>/migration[-nonconv]-<link-mode>.md        medians + verdicts
    <out>/migration[-nonconv]-<link-mode>-{time,downtime,bytes,cpu}.png

Links are emulated either with QEMU's max-bandwidth on the source
(--link-mode maxbw) or with a real TCP path: the source QEMU in one network
namespace, the destination in another, joined by a veth pair whose source end
is shaped with a tc token bucket (--link-mode tc).

One source QEMU is booted per (repeat, workload) and migrated once per
(link, method) to a fresh destination, resumed after each migration; the
methods run in an order rotated per (repeat, workload, link) so drift over
time hits every method alike.  --fresh-source boots a new source per
migration instead.

    bench.py --qemu Q [--link-mode maxbw|tc] [--repeats N] [--quick]
    bench.py --scenario nonconv --qemu Q
    bench.py --report-only [--link-mode ...] [--scenario ...]
"""

import argparse
import atexit
import csv
import io
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

import migrate as M
import qemu as Q
import rounds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "docs", "results")

# --------------------------------------------------------------------------
# catalogue
# --------------------------------------------------------------------------
# method label -> (multifd-compression, extra migrate-set-parameters)
METHODS = {
    "none": ("none", {}),
    "zlib-1": ("zlib", {"multifd-zlib-level": 1}),
    "zstd-1": ("zstd", {"multifd-zstd-level": 1}),
    "cbc-fixed": ("cbc", {"multifd-cbc-mode": "fixed"}),
    "cbc-adaptive": ("cbc", {"multifd-cbc-mode": "adaptive"}),
}
METHOD_ORDER = list(METHODS)
# Variants, not in the main matrix: adaptive with the source's encoders
# given TCP_INFO of their connections (multifd-cbc-tcp-info, the default)
# or without it.  Both set the parameter, since one source QEMU is
# migrated once per method and keeps its parameters.
METHODS["cbc-adaptive-tcpinfo-off"] = ("cbc", {"multifd-cbc-mode": "adaptive",
                                              "multifd-cbc-tcp-info": False})
METHODS["cbc-adaptive-tcpinfo-on"] = ("cbc", {"multifd-cbc-mode": "adaptive",
                                             "multifd-cbc-tcp-info": True})
# Deltas of re-sent pages on (the default 64 MiB page cache) and off
# (multifd-cbc-cache-size 0), set explicitly for the same reason.
METHODS["cbc-adaptive-delta"] = ("cbc", {"multifd-cbc-mode": "adaptive",
                                        "multifd-cbc-cache-size": 64 << 20})
METHODS["cbc-adaptive-nodelta"] = ("cbc", {"multifd-cbc-mode": "adaptive",
                                          "multifd-cbc-cache-size": 0})
# A cache as large as the default guest's RAM (384 MiB): a working set
# larger than the default 64 MiB cache misses it on most re-sent pages.
METHODS["cbc-adaptive-delta-384m"] = ("cbc", {"multifd-cbc-mode": "adaptive",
                                             "multifd-cbc-cache-size": 384 << 20})

# Memwrite (random data) dirty rates of the main matrix, MiB/s of dirtied
# pages.  Under TCG on the 2-core machine the random writer reaches about
# 300 MiB/s (partial page rewrites), so both rates are really applied.
LOW_RATE = 8
HIGH_RATE = 64

SCENARIOS = {
    "main": {
        "workloads": ["idle", "compile", "sort", "memwrite-low", "memwrite-high",
                      "replay:compile", "replay:sort", "replay:idle"],
        "links": "1g,10g",
        "methods": METHOD_ORDER,
        "repeats": 3,
    },
    # Where does a method stop converging?  Random data at the highest rate
    # TCG reaches (~300 MiB/s, over the 1 Gbit/s link's 119 MiB/s) and the
    # compressible default mix at its highest rate (~20 MiB/s), on 1 Gbit/s
    # and on 100 Mbit/s (11.9 MiB/s, below the mix's dirty rate); and
    # in-place word updates of a 48 MiB working set (random data) at 250 000
    # pages/s, whose re-sent pages every method but a delta sends whole.
    "nonconv": {
        "workloads": ["memwrite:random:0", "memwrite:mixed:0", "memwrite:random:250000p:word:48"],
        "links": "1g,100m",
        "methods": ["none", "zstd-1", "cbc-adaptive"],
        "repeats": 1,
    },
    # Deltas of re-sent pages (issue 16): workloads that rewrite parts of
    # pages (the random writer's partial rewrites, the replay workloads'
    # word updates and slices), cbc with its page cache and without, next
    # to none and zstd-1, on 1 Gbit/s and 100 Mbit/s.
    "delta": {
        "workloads": ["memwrite-low", "replay:compile", "replay:sort", "replay:idle"],
        "links": "1g,100m",
        "methods": ["none", "zstd-1", "cbc-adaptive-nodelta", "cbc-adaptive-delta"],
        "repeats": 3,
    },
    # Slow links (issue 15): cbc against zstd-1 where the link is the
    # bottleneck, on real page contents (replay) and the synthetic
    # workloads.  `none` is left out: it does not converge in several of
    # these cells and would spend the timeout three times per cell.
    "slow": {
        "workloads": ["compile", "sort", "memwrite-low",
                      "replay:compile", "replay:sort", "replay:idle"],
        "links": "1g,100m",
        "methods": ["zstd-1", "cbc-adaptive"],
        "repeats": 3,
    },
}
SCENARIO_TITLES = {"main": "Migration benchmark", "nonconv": "Non-convergence scenario",
                   "slow": "Slow links: cbc against zstd-1",
                   "delta": "Deltas of re-sent pages"}
QUICK = {"workloads": ["idle", "memwrite-high"], "links": "1g", "repeats": 1}


def workload_spec(name, low_rate=LOW_RATE, high_rate=HIGH_RATE, image=None):
    """Benchmark workload name -> dict(workload, rate, data, image).

    idle | compile | sort | memwrite-low | memwrite-high |
    memwrite:<data>:<rate>[:<dirty>[:<wss>]]  (rate in MiB/s or <N>p pages/s,
        0 = as fast as the guest can; dirty = partial (default), full or word:
        what each write rewrites; wss = the working set in MiB, default half
        the guest's RAM) |
    replay:<image>  (a corpus name such as compile, or a file) |
    replay  (the image of --image)."""
    if name in ("idle", "compile", "sort"):
        return {"name": name, "workload": name, "rate": None, "data": None, "image": None}
    if name == "replay" or name.startswith("replay:"):
        img = name.partition(":")[2] or image
        if not img:
            raise ValueError("workload 'replay' needs --image (or name it: replay:<image>)")
        return {"name": name, "workload": "replay", "rate": None, "data": None, "image": img}
    if name == "memwrite-low":
        return {"name": name, "workload": "memwrite", "rate": str(low_rate), "data": "random",
                "image": None}
    if name == "memwrite-high":
        return {"name": name, "workload": "memwrite", "rate": str(high_rate), "data": "random",
                "image": None}
    m = re.fullmatch(r"memwrite:([A-Za-z0-9:,_]+?):(\d+p?)(?::(partial|full|word))?(?::(\d+))?", name)
    if m:
        return {"name": name, "workload": "memwrite", "rate": m.group(2), "data": m.group(1),
                "image": None, "dirty": m.group(3), "wss": int(m.group(4)) if m.group(4) else None}
    raise ValueError(f"unknown workload {name!r}")


def parse_links(text):
    """'1g,10g' -> [('1g', 125000000), ('10g', 1250000000)] (bytes/s)."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        bps = M.parse_bandwidth(item)
        if bps <= 0:
            raise ValueError(f"link {item!r}: need a finite rate")
        out.append((item, bps))
    if not out:
        raise ValueError("no links")
    return out


def link_label(bps):
    bits = bps * 8
    for unit, div in (("Gbit/s", 1e9), ("Mbit/s", 1e6)):
        if bits >= div:
            v = bits / div
            return f"{v:g} {unit}"
    return f"{bits:g} bit/s"


def rotated(items, k):
    k %= len(items)
    return list(items[k:]) + list(items[:k])


def plan(repeats, workloads, links, methods):
    """The run order: list of groups (one source boot each), each
    {'repeat', 'workload', 'cells': [(link, [methods in order])]}.
    Methods are rotated by one position per (repeat, workload, link) cell
    and the link order alternates per repeat."""
    groups = []
    cell = 0
    for rep in range(1, repeats + 1):
        lk = list(links) if rep % 2 == 1 else list(reversed(links))
        for w in workloads:
            cells = []
            for link in lk:
                cells.append((link, rotated(methods, cell)))
                cell += 1
            groups.append({"repeat": rep, "workload": w, "cells": cells})
    return groups


# --------------------------------------------------------------------------
# tc / network namespaces
# --------------------------------------------------------------------------
def tbf_args(bps):
    """tc arguments of a token bucket for `bps` bytes/s: burst = 4 ms of
    traffic (at least 64 KiB so a GSO packet always fits), queue 10 ms."""
    rate_bit = int(bps * 8)
    burst = max(64 * 1024, int(bps * 0.004))
    return ["tbf", "rate", f"{rate_bit}bit", "burst", str(burst), "latency", "10ms"]


def parse_tc_sent(text):
    """Bytes and packets of the first 'Sent N bytes M pkt' of `tc -s qdisc`."""
    m = re.search(r"Sent (\d+) bytes (\d+) pkt", text)
    if not m:
        return None, None
    return int(m.group(1)), int(m.group(2))


class NetNS:
    """Two network namespaces joined by a veth pair; the source end shaped."""

    SRC_IP = "10.77.0.1"
    DST_IP = "10.77.0.2"

    def __init__(self, tag):
        self.ns_src = f"mecomb-{tag}-src"
        self.ns_dst = f"mecomb-{tag}-dst"
        self.veth_src = f"mb{tag}s"[:15]
        self.veth_dst = f"mb{tag}d"[:15]
        self.up = False
        self.rate = None

    @staticmethod
    def _run(args, check=True):
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if check and r.returncode != 0:
            raise Q.HarnessError(f"{' '.join(args)}: {r.stdout.strip()}")
        return r.stdout

    def setup(self):
        self.teardown()
        self.up = True
        r = self._run
        r(["ip", "netns", "add", self.ns_src])
        r(["ip", "netns", "add", self.ns_dst])
        r(["ip", "link", "add", self.veth_src, "type", "veth", "peer", "name", self.veth_dst])
        r(["ip", "link", "set", self.veth_src, "netns", self.ns_src])
        r(["ip", "link", "set", self.veth_dst, "netns", self.ns_dst])
        for ns, dev, ip in ((self.ns_src, self.veth_src, self.SRC_IP),
                            (self.ns_dst, self.veth_dst, self.DST_IP)):
            r(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev])
            r(["ip", "-n", ns, "link", "set", dev, "up"])
            r(["ip", "-n", ns, "link", "set", "lo", "up"])
        Q.log(f"netns {self.ns_src} ({self.SRC_IP}, {self.veth_src}) <-> "
              f"{self.ns_dst} ({self.DST_IP}, {self.veth_dst})")

    def shape(self, bps):
        self._run(["tc", "-n", self.ns_src, "qdisc", "replace", "dev", self.veth_src, "root"]
                  + tbf_args(bps))
        self.rate = bps
        Q.log(f"tc: {self.veth_src} root {' '.join(tbf_args(bps))}")

    def qdisc_stats(self):
        out = self._run(["tc", "-n", self.ns_src, "-s", "qdisc", "show", "dev", self.veth_src],
                        check=False)
        return out

    def sent_bytes(self):
        return parse_tc_sent(self.qdisc_stats())[0]

    def teardown(self):
        for ns in (self.ns_src, self.ns_dst):
            subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        self.up = False

    def wrap(self, vm, side):
        """Make a not yet started migrate.Qemu run inside a namespace
        (`ip netns exec` execs QEMU, so the pid stays QEMU's)."""
        ns = self.ns_src if side == "src" else self.ns_dst
        vm.args = ["ip", "netns", "exec", ns] + vm.args
        return vm


# --------------------------------------------------------------------------
# one migration
# --------------------------------------------------------------------------
def set_method(opts, method_label):
    method, params = METHODS[method_label]
    opts.params = dict(params)
    return method


def last_guest_rate(serial_text):
    """Last 'memwrite|replay: N pages/s (X MiB/s)' line of a serial log -> X."""
    found = re.findall(r"(?:memwrite|replay): \d+ pages/s \(([\d.]+) MiB/s\)", serial_text)
    return float(found[-1]) if found else None


def row_from_result(res, ctx):
    """One CSV row from a migrate.migrate_and_wait result dict + context."""
    ram = res.get("ram") or {}
    cpu = res.get("cpu") or {}
    src_threads = (cpu.get("src") or {}).get("threads_s") or {}
    status = res.get("status") or "harness-error"
    total = res.get("total_time_ms")
    if total is None and res.get("migrate_wall_s") is not None:
        total = int(res["migrate_wall_s"] * 1000)
    xfer = ram.get("transferred")
    # cbc's page cache and page counts (query-migrate's `cbc`): whether
    # re-sent pages went as deltas is what the cache's hits say.
    cbc = (res.get("method_stats") or {}).get("cbc") or {}
    row = dict(ctx)
    row.update({
        "status": status,
        "converged": int(status == "completed"),
        "total_ms": total,
        "downtime_ms": res.get("downtime_ms"),
        "setup_ms": res.get("setup_time_ms"),
        "bytes": xfer,
        "mib": None if xfer is None else round(xfer / 2**20, 2),
        "multifd_bytes": ram.get("multifd-bytes"),
        "normal_bytes": ram.get("normal-bytes"),
        "ratio": round(ram["normal-bytes"] / xfer, 3) if xfer and ram.get("normal-bytes") else None,
        "dirty_syncs": ram.get("dirty-sync-count"),
        "peak_dirty_pps": (res.get("peak") or {}).get("dirty-pages-rate"),
        "src_cpu_s": (cpu.get("src") or {}).get("process_s"),
        "src_mig_cpu_s": round(sum(src_threads.values()), 2) if src_threads else None,
        "dst_cpu_s": (cpu.get("dst") or {}).get("process_s"),
        "ram_identical": None if res.get("ram_identical") is None else int(bool(res["ram_identical"])),
        "diff_pages": (res.get("ram_compare") or {}).get("diff_pages"),
        "cache_hits": cbc.get("cache-hits"),
        "cache_misses": cbc.get("cache-misses"),
        "cache_overflow": cbc.get("cache-overflow"),
        "pages_delta": cbc.get("pages-delta"),
        "pages_raw": cbc.get("pages-raw"),
        "pages_lz4": cbc.get("pages-lz4"),
        "pages_zstd": cbc.get("pages-zstd"),
        "ok": int(bool(res.get("ok"))),
        "error": (res.get("error") or "")[:300],
    })
    return row


CSV_FIELDS = [
    "scenario", "link_mode", "link", "link_Bps", "workload", "method", "compression",
    "repeat", "order", "seq", "started", "status", "converged", "ok", "total_ms", "downtime_ms",
    "setup_ms", "bytes", "mib", "multifd_bytes", "normal_bytes", "ratio", "dirty_syncs",
    "peak_dirty_pps", "guest_dirty_mibs", "src_cpu_s", "src_mig_cpu_s", "dst_cpu_s",
    "ram_identical", "diff_pages", "tc_bytes", "mem_mib", "channels", "timeout_s",
    "downtime_limit_ms", "qemu_version", "error",
    "cache_hits", "cache_misses", "cache_overflow", "pages_delta", "pages_raw",
    "pages_lz4", "pages_zstd",
]


def migrate_once(src, opts, g, workdir, run_id, n, method_label, channels, netns, ctx):
    """Migrate the running `src` to a fresh destination; compare RAM; resume
    the source.  Returns (row, result)."""
    res = {"ok": False}
    method = set_method(opts, method_label)
    dst = None
    tc0 = netns.sent_bytes() if netns else None
    try:
        M.configure(src, opts, method, channels, "src")
        dst = Q.Qemu(f"dst{n}", run_id, opts, g, workdir, incoming=True)
        if netns:
            netns.wrap(dst, "dst")
        dst.start()
        M.configure(dst, opts, method, channels, "dst")
        host = NetNS.DST_IP if netns else "127.0.0.1"
        uri = Q.start_incoming(dst, Q.free_port(), host)
        v = src.qmp.version.get("qemu") or {}
        res["qemu_version"] = f"{v.get('major')}.{v.get('minor')}.{v.get('micro')}" if v else None
        recorder = None
        if getattr(opts, "round_dump_dir", None):
            res["round_dump"] = os.path.join(opts.round_dump_dir, re.sub(
                r"[^A-Za-z0-9.-]", "_", f"{ctx['workload']}-{ctx['link']}-{method_label}"
                                        f"-r{ctx['repeat']}") + ".rd.zst")
            recorder = rounds.RoundRecorder(src.shm, res["round_dump"], track=Q.track_shm)
        M.judge(src, dst, opts, res, M.migrate_and_wait(src, dst, uri, opts, res, recorder))
        if recorder is not None:
            Q.log(f"  round dump {res['round_dump']}: rounds (sync from-to, pages) "
                  + ", ".join(f"{r[1]}-{r[2]}:{r[3]}" for r in recorder.log))
    except (Q.HarnessError, Q.QMPError) as e:
        res["error"] = f"{type(e).__name__}: {e}"
        res.setdefault("status", "harness-error")
    finally:
        if dst is not None:
            dst.stop()
    ctx = dict(ctx)
    ctx["tc_bytes"] = None
    if netns:
        tc1 = netns.sent_bytes()
        if tc0 is not None and tc1 is not None:
            ctx["tc_bytes"] = tc1 - tc0
    ctx["guest_dirty_mibs"] = last_guest_rate(src.serial()) if src.alive() else None
    ctx["qemu_version"] = res.get("qemu_version")
    row = row_from_result(res, ctx)
    # A non-converged migration is a measurement, not a failure.
    if row["status"] == "did-not-converge":
        row["ok"] = 1
    if res.get("ram_identical") is False:
        banner = "!" * 78
        Q.log(banner)
        Q.log(f"!!! RAM DIFFERS after {method_label} {ctx['workload']} {ctx['link']} "
              f"rep {ctx['repeat']}: {res.get('error')}")
        Q.log(f"!!! logs: {workdir}")
        Q.log(banner)
    return row, res


# --------------------------------------------------------------------------
# aggregation and report
# --------------------------------------------------------------------------
def _num(v):
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})


METRICS = {  # key -> (CSV column, scale)
    "total_s": ("total_ms", 1e-3),
    "downtime_ms": ("downtime_ms", 1),
    "mib": ("mib", 1),
    "src_cpu_s": ("src_cpu_s", 1),
    "src_mig_cpu_s": ("src_mig_cpu_s", 1),
    "dst_cpu_s": ("dst_cpu_s", 1),
    "syncs": ("dirty_syncs", 1),
}


def aggregate(rows):
    """{(link, workload, method): stats}.  Medians (and min/max) are over the
    converged runs; n = runs, conv = converged runs, bad = RAM mismatches."""
    cells = {}
    for r in rows:
        key = (r["link"], r["workload"], r["method"])
        cells.setdefault(key, []).append(r)
    out = {}
    for key, rs in cells.items():
        conv = [r for r in rs if str(r.get("converged")) == "1"]
        st = {"n": len(rs), "conv": len(conv),
              "bad": sum(1 for r in rs if str(r.get("ram_identical")) == "0"),
              "failed": sum(1 for r in rs if str(r.get("ok")) != "1")}
        for name, (col, scale) in METRICS.items():
            vals = [v * scale for v in (_num(r.get(col)) for r in conv) if v is not None]
            st[name] = statistics.median(vals) if vals else None
            st[name + "_min"] = min(vals) if vals else None
            st[name + "_max"] = max(vals) if vals else None
        out[key] = st
    return out


def _order(values, preferred):
    pref = [v for v in preferred if v in values]
    return pref + sorted(v for v in values if v not in preferred)


def verdict(value, target, lower_is_better=True):
    """'met' if value <= target, else 'missed by X%' (X relative to target)."""
    if value is None:
        return "missed (did not converge)"
    if target is None:
        return "met (no converged peer)"
    if value <= target:
        return "met"
    if target == 0:
        return f"missed ({value:g} vs 0)"
    return f"missed by {100.0 * (value - target) / target:.0f}%"


def cell_verdicts(agg, link, workload, subject="cbc-adaptive"):
    """The issue's targets for one (link, workload) cell.  None if the
    subject or the needed peers are missing."""
    me = agg.get((link, workload, subject))
    if me is None:
        return None
    def get(m, k):
        st = agg.get((link, workload, m))
        return None if st is None else st.get(k)
    # The peers are QEMU's own methods; cbc's other mode is not a peer.
    peers = [m for (lk, w, m) in agg if lk == link and w == workload
             and m in ("none", "zlib-1", "zstd-1")]
    out = {}
    if (link, workload, "none") in agg or (link, workload, "zstd-1") in agg:
        ts = [get(m, "total_s") for m in ("none", "zstd-1") if (link, workload, m) in agg]
        conv_ts = [t for t in ts if t is not None]
        # A peer that never converged is beaten by any converged run.
        target = min(conv_ts) if conv_ts else None
        out["time < none, zstd"] = verdict(me["total_s"], target)
    if (link, workload, "zstd-1") in agg:
        out["bytes <= zstd"] = verdict(me["mib"], get("zstd-1", "mib"))
    dts = [get(m, "downtime_ms") for m in peers]
    dts = [d for d in dts if d is not None]
    if peers:
        out["downtime <= best peer"] = verdict(me["downtime_ms"], min(dts) if dts else None)
    if (link, workload, "zstd-1") in agg:
        z = get("zstd-1", "src_mig_cpu_s")
        out["src CPU <= zstd/2"] = verdict(me["src_mig_cpu_s"], None if z is None else z / 2)
    return out


def _f(v, nd):
    return "–" if v is None else f"{v:.{nd}f}"


def render_markdown(rows, title, cmdline=None):
    agg = aggregate(rows)
    links = _order({r["link"] for r in rows}, ["1g", "10g", "100m"])
    wls = _order({r["workload"] for r in rows}, SCENARIOS["main"]["workloads"])
    methods = _order({r["method"] for r in rows}, METHOD_ORDER)
    any_row = rows[0] if rows else {}
    reps = sorted({int(r["repeat"]) for r in rows if str(r.get("repeat", "")).isdigit()})
    out = io.StringIO()
    p = lambda s="": print(s, file=out)  # noqa: E731
    p(f"# {title}")
    p()
    p(f"Link emulation: `{any_row.get('link_mode', '?')}`; "
      f"guest RAM {any_row.get('mem_mib', '?')} MiB; {any_row.get('channels', '?')} multifd channels; "
      f"downtime limit {any_row.get('downtime_limit_ms', '?')} ms; "
      f"timeout {any_row.get('timeout_s', '?')} s; repeats {len(reps)}; "
      f"{len(rows)} migrations; QEMU {any_row.get('qemu_version') or '?'} (TCG).")
    starts = sorted(r.get("started", "") for r in rows if r.get("started"))
    if starts:
        p(f"Runs from {starts[0]} to {starts[-1]}.")
    if cmdline:
        p()
        p(f"Command: `{cmdline}`")
    p()
    p("Medians over the converged runs of each cell (see docs/benchmark.md). "
      "`src CPU` is the whole source QEMU process (guest vCPU included), "
      "`src mig CPU` its migration threads (main + multifd senders: the compressors), "
      "`dst CPU` the whole destination QEMU (receive + decompress; its guest is paused). "
      "`conv` = converged runs / runs; `RAM` = runs whose whole-RAM comparison failed.")
    bad = [r for r in rows if str(r.get("ram_identical")) == "0"]
    failed = [r for r in rows if str(r.get("ok")) != "1"]
    if bad:
        p()
        p(f"**RAM DIFFERS in {len(bad)} run(s)** — see the CSV `error` column.")
    if failed:
        p()
        p(f"**{len(failed)} run(s) failed** (other than non-convergence): " +
          "; ".join(f"{r['workload']}/{r['method']}/{r['link']} r{r['repeat']}: {r.get('error', '')[:120]}"
                    for r in failed[:10]))
    for link in links:
        bps = next((_num(r.get("link_Bps")) for r in rows if r["link"] == link), None)
        p()
        p(f"## {link}" + (f" ({link_label(bps)})" if bps else ""))
        p()
        p("| workload | method | total s | downtime ms | MiB sent | src CPU s | src mig CPU s "
          "| dst CPU s | syncs | conv | RAM |")
        p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for w in wls:
            for m in methods:
                st = agg.get((link, w, m))
                if st is None:
                    continue
                ram = "ok" if st["bad"] == 0 else f"**{st['bad']} DIFFER**"
                p(f"| {w} | {m} | {_f(st['total_s'], 2)} | {_f(st['downtime_ms'], 0)} | "
                  f"{_f(st['mib'], 1)} | {_f(st['src_cpu_s'], 2)} | {_f(st['src_mig_cpu_s'], 2)} | "
                  f"{_f(st['dst_cpu_s'], 2)} | {_f(st['syncs'], 0)} | {st['conv']}/{st['n']} | {ram} |")
        vrows = [(w, cell_verdicts(agg, link, w)) for w in wls]
        vrows = [(w, v) for w, v in vrows if v]
        if vrows:
            keys = []
            for _, v in vrows:
                keys += [k for k in v if k not in keys]
            p()
            p(f"cbc-adaptive against the targets ({link}):")
            p()
            p("| workload | " + " | ".join(keys) + " |")
            p("|---|" + "---|" * len(keys))
            for w, v in vrows:
                p(f"| {w} | " + " | ".join(v.get(k, "–") for k in keys) + " |")
    p()
    p("Targets (issue 4): cbc adaptive's total time below both `none` and `zstd-1`; bytes "
      "sent ≤ `zstd-1`; downtime ≤ the best other method; source migration-thread CPU ≤ half "
      "of `zstd-1`'s.  \"missed by X%\" is relative to the target value.")
    return out.getvalue()


VERDICT_METRICS = [  # (metric, what the best is, unit, decimals)
    ("total_s", "fastest (total migration time)", "s", 2),
    ("mib", "smallest (MiB sent)", "MiB", 1),
    ("src_mig_cpu_s", "cheapest in source CPU (migration threads)", "s", 2),
    ("dst_cpu_s", "cheapest in destination CPU", "s", 2),
    ("downtime_ms", "shortest downtime", "ms", 0),
]


def verdict_lines(rows):
    """One plain line per (link, workload, metric): the method with the
    lowest median over its converged runs, its min–max, and every other
    method's median and min–max; says when the winner's range overlaps
    another's (no clear winner) and which methods did not always converge."""
    agg = aggregate(rows)
    links = _order({r["link"] for r in rows}, ["1g", "10g", "100m"])
    wls = _order({r["workload"] for r in rows}, SCENARIOS["main"]["workloads"])
    methods = _order({r["method"] for r in rows if r.get("method") in METHODS}, METHOD_ORDER)
    out = []
    for link in links:
        for w in wls:
            cell = {m: agg[(link, w, m)] for m in methods if (link, w, m) in agg}
            if not cell:
                continue
            head = f"[{w} @ {link}, {max(st['n'] for st in cell.values())} runs per method]"
            for metric, what, unit, nd in VERDICT_METRICS:
                have = [(st[metric], m) for m, st in cell.items() if st[metric] is not None]
                if not have:
                    out.append(f"{head} {what}: no method converged")
                    continue
                have.sort()
                best = have[0][1]
                bst = cell[best]
                parts = [f"{m} {st[metric]:.{nd}f} ({st[metric + '_min']:.{nd}f}–"
                         f"{st[metric + '_max']:.{nd}f})"
                         for m, st in sorted(cell.items(), key=lambda kv: (kv[1][metric] is None,
                                                                          kv[1][metric] or 0))
                         if st[metric] is not None]
                overlap = [m for _, m in have[1:] if cell[m][metric + "_min"] <= bst[metric + "_max"]]
                note = (f"; ranges overlap with {', '.join(overlap)}: not a clear win" if overlap
                        else "; ranges do not overlap")
                dnc = [f"{m} {st['conv']}/{st['n']}" for m, st in cell.items() if st["conv"] < st["n"]]
                if dnc:
                    note += "; converged only " + ", ".join(dnc)
                out.append(f"{head} {what}: {best}. median (min–max) {unit}: "
                           + ", ".join(parts) + note)
    return out


PLOTS = {  # suffix -> [(metric, axis label)]
    "time": [("total_s", "total time (s)")],
    "downtime": [("downtime_ms", "downtime (ms)")],
    "bytes": [("mib", "MiB sent")],
    "cpu": [("src_mig_cpu_s", "source migration threads CPU (s)"),
            ("src_cpu_s", "source QEMU CPU (s)"),
            ("dst_cpu_s", "destination QEMU CPU (s)")],
}


def make_plots(rows, prefix, title):
    """Grouped bar charts: one figure per metric, one panel per link (and per
    sub-metric for cpu), workloads on x, one bar per method; whiskers =
    min..max of converged runs; a hatched bar marked DNC where no run
    converged.  Returns the list of files written ([] without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        Q.log("matplotlib not available (Debian: apt-get install python3-matplotlib); no PNGs")
        return []
    agg = aggregate(rows)
    links = _order({r["link"] for r in rows}, ["1g", "10g", "100m"])
    wls = _order({r["workload"] for r in rows}, SCENARIOS["main"]["workloads"])
    methods = _order({r["method"] for r in rows}, METHOD_ORDER)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    files = []
    for suffix, metrics in PLOTS.items():
        nr, nc = len(metrics), len(links)
        panel_w = max(5.0, 0.22 * len(wls) * len(methods) + 1.5)
        fig, axes = plt.subplots(nr, nc, figsize=(panel_w * nc + 1.6, 3.4 * nr + 0.9), squeeze=False)
        width = 0.8 / max(1, len(methods))
        for i, (metric, label) in enumerate(metrics):
            for j, link in enumerate(links):
                ax = axes[i][j]
                ymax = 0
                for k, m in enumerate(methods):
                    xs, ys, lo, hi, dnc = [], [], [], [], []
                    for x, w in enumerate(wls):
                        st = agg.get((link, w, m))
                        if st is None:
                            continue
                        xpos = x - 0.4 + width * (k + 0.5)
                        v = st.get(metric)
                        if v is None:
                            dnc.append(xpos)
                            continue
                        xs.append(xpos)
                        ys.append(v)
                        lo.append(v - st[metric + "_min"])
                        hi.append(st[metric + "_max"] - v)
                        ymax = max(ymax, st[metric + "_max"])
                    ax.bar(xs, ys, width, yerr=[lo, hi] if xs else None, capsize=2,
                           color=colors[k % len(colors)], label=m)
                    for xpos in dnc:
                        ax.text(xpos, 0, "DNC", rotation=90, ha="center", va="bottom",
                                fontsize=7, color=colors[k % len(colors)])
                ax.set_xticks(range(len(wls)))
                ax.set_xticklabels(wls, rotation=20, fontsize=8)
                ax.set_ylabel(label, fontsize=8)
                ax.set_title(f"{link} ({link_label(next(_num(r['link_Bps']) for r in rows if r['link'] == link))})",
                             fontsize=9)
                ax.grid(axis="y", alpha=0.3)
                if ymax > 0:
                    ax.set_ylim(0, ymax * 1.12)
        axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.suptitle(f"{title}: {suffix}\nmedian of converged runs, whiskers min..max; "
                     f"DNC = no run converged", fontsize=9)
        fig.tight_layout()
        path = f"{prefix}-{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files


def output_prefix(out, scenario, link_mode):
    name = "migration" if scenario == "main" else f"migration-{scenario}"
    return os.path.join(out, f"{name}-{link_mode}")


def report(csv_path, prefix, title, cmdline=None):
    rows = read_csv(csv_path)
    if not rows:
        Q.log(f"{csv_path}: no rows")
        return None
    md = render_markdown(rows, title, cmdline)
    pngs = make_plots(rows, prefix, title)
    if pngs:
        md += "\nPlots: " + ", ".join(f"[{os.path.basename(f).rsplit('-', 1)[1][:-4]}]({os.path.basename(f)})"
                                     for f in pngs) + "\n"
    with open(prefix + ".md", "w") as f:
        f.write(md)
    Q.log(f"wrote {prefix}.md" + (" and " + ", ".join(os.path.basename(f) for f in pngs) if pngs else ""))
    return md


# --------------------------------------------------------------------------
# runner
# --------------------------------------------------------------------------
def harness_opts(args):
    argv = ["--qemu", args.qemu, "--mem", str(args.mem), "--settle", str(args.settle),
            "--timeout", str(args.timeout), "--downtime-limit", str(args.downtime_limit),
            "--dst-timeout", "60", "--cont-timeout", "20", "--boot-timeout", str(args.boot_timeout)]
    if args.guest:
        argv += ["--guest", args.guest]
    if args.mix:
        argv += ["--mix", args.mix]
    for a in args.qemu_arg:
        argv += ["--qemu-arg", a]
    return M.parse_opts(argv)


def boot_source(opts, g, workdir, run_id, netns):
    src = Q.Qemu("src", run_id, opts, g, workdir)
    if netns:
        netns.wrap(src, "src")
    src.start()
    t = time.monotonic()
    marker = Q.wait_workload(src, opts.boot_timeout)
    Q.log(f"  source ready after {time.monotonic() - t:.1f}s: {marker}")
    time.sleep(opts.settle)
    return src


def run_matrix(args, groups, links_bps, csv_path):
    opts = harness_opts(args)
    if args.round_dump:
        os.makedirs(args.round_dump, exist_ok=True)
        opts.round_dump_dir = args.round_dump
        opts.poll = min(opts.poll, M.ROUND_DUMP_POLL)
    kernel, initrd, _ = Q.guest_files(opts)
    base = args.workdir or os.path.join("/tmp/mecom-bench", time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}")
    os.makedirs(base, exist_ok=True)
    jsonl = open(os.path.join(base, "results.jsonl"), "a")
    Q.log(f"logs and full results (results.jsonl) under {base}")
    netns = None
    if args.link_mode == "tc":
        netns = NetNS(str(os.getpid() % 100000))
        atexit.register(netns.teardown)
        netns.setup()
    rows = read_csv(csv_path) if args.append and os.path.exists(csv_path) else []
    write_csv(csv_path, rows)
    total = sum(len(ms) for gr in groups for _, ms in gr["cells"])
    seq = 0
    t_start = time.monotonic()
    try:
        for gi, gr in enumerate(groups, 1):
            spec = workload_spec(gr["workload"], args.low_rate, args.high_rate, args.image)
            opts.rate, opts.data = spec["rate"], spec["data"]
            opts.dirty, opts.wss = spec.get("dirty"), spec.get("wss")
            opts.image_raw = Q.raw_image(Q.resolve_image(spec["image"])) if spec["image"] else None
            if spec["image"] and args.replay_rate is not None:
                opts.rate = args.replay_rate
            g = {"kernel": kernel, "initrd": initrd, "append": M.kernel_append(opts, spec["workload"])}
            run_id = f"{os.getpid()}-{gi}"
            workdir = os.path.join(base, f"{gi:03d}-{re.sub(r'[^A-Za-z0-9-]', '_', gr['workload'])}-r{gr['repeat']}")
            os.makedirs(workdir, exist_ok=True)
            src = None
            n = 0
            try:
                for link, methods in gr["cells"]:
                    bps = links_bps[link]
                    if netns:
                        netns.shape(bps)
                        opts.max_bandwidth = 0
                    else:
                        opts.max_bandwidth = bps
                    for order, m in enumerate(methods, 1):
                        seq += 1
                        n += 1
                        if src is not None and args.fresh_source:
                            src.stop()
                            src = None
                        if src is None or not src.alive():
                            Q.log(f"group {gi}/{len(groups)}: boot source, workload {gr['workload']} "
                                  f"({g['append'].split('mecom.', 1)[-1]}) rep {gr['repeat']}")
                            src = boot_source(opts, g, workdir, run_id + f"-{n}", netns)
                        elif seq > 1:
                            time.sleep(args.gap)
                        Q.log(f"run {seq}/{total}: {gr['workload']} {link} {m} rep {gr['repeat']} "
                              f"(order {order})")
                        ctx = {"scenario": args.scenario, "link_mode": args.link_mode, "link": link,
                               "link_Bps": bps, "workload": gr["workload"], "method": m,
                               "compression": METHODS[m][0], "repeat": gr["repeat"], "order": order,
                               "seq": seq, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "mem_mib": args.mem, "channels": args.channels,
                               "timeout_s": args.timeout, "downtime_limit_ms": args.downtime_limit}
                        row, res = migrate_once(src, opts, g, workdir, run_id, n, m, args.channels,
                                                netns, ctx)
                        rows.append(row)
                        write_csv(csv_path, rows)
                        jsonl.write(json.dumps(dict(res, **ctx), sort_keys=True, default=str) + "\n")
                        jsonl.flush()
                        Q.log(f"  {'OK ' if row['ok'] else 'FAIL'} {row['status']} total={row['total_ms']} ms "
                              f"down={row['downtime_ms']} ms {row['mib']} MiB syncs={row['dirty_syncs']} "
                              f"cpu src={row['src_cpu_s']}/{row['src_mig_cpu_s']} dst={row['dst_cpu_s']} s "
                              f"identical={row['ram_identical']}"
                              + (f" tc={row['tc_bytes']}" if netns else "")
                              + (f" ({row['error']})" if row["error"] else ""))
                        if src.alive():
                            try:
                                st = Q.resume(src)
                            except (Q.HarnessError, Q.QMPError) as e:
                                st = {"status": str(e)}
                            if not st.get("running"):
                                Q.log(f"  source not running after the migration ({st.get('status')}); "
                                      f"rebooting it")
                                src.stop()
                                src = None
            except (Q.HarnessError, Q.QMPError) as e:
                Q.log(f"group {gi} aborted: {e}")
                rows.append({"scenario": args.scenario, "link_mode": args.link_mode,
                             "link": gr["cells"][0][0], "link_Bps": links_bps[gr["cells"][0][0]],
                             "workload": gr["workload"], "method": "-", "repeat": gr["repeat"],
                             "status": "harness-error", "converged": 0, "ok": 0, "error": str(e)[:300]})
                write_csv(csv_path, rows)
            finally:
                if src is not None:
                    src.stop()
            elapsed = time.monotonic() - t_start
            Q.log(f"after group {gi}/{len(groups)}: {seq}/{total} migrations in {elapsed / 60:.1f} min")
    finally:
        Q.cleanup_all()
        if netns:
            Q.log("tc -s qdisc at the end:\n" + netns.qdisc_stats().rstrip())
            netns.teardown()
        jsonl.close()
    return rows


def build_parser():
    p = argparse.ArgumentParser(description="mecom live-migration benchmark (docs/benchmark.md)")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="main",
                   help="main matrix, or nonconv (where methods stop converging)")
    p.add_argument("--link-mode", choices=["maxbw", "tc"], default="maxbw",
                   help="maxbw: QEMU max-bandwidth on loopback; tc: netns + veth + tbf (root)")
    p.add_argument("--links", default=None, help="comma list of link rates (1g = 1 Gbit/s; default by scenario)")
    p.add_argument("--workloads", default=None,
                   help="comma list: idle,compile,sort,memwrite-low,memwrite-high,"
                        "memwrite:<data>:<MiB/s|Np>[:<partial|full|word>[:<wss MiB>]],replay:<image>")
    p.add_argument("--methods", default=None, help=f"comma list of {','.join(METHOD_ORDER)}")
    p.add_argument("--repeats", type=int, default=None, help="repeats (default: 3 main, 1 nonconv)")
    p.add_argument("--quick", action="store_true",
                   help="validation: 1 repeat, workloads idle + memwrite-high, link 1g")
    p.add_argument("--image", default=None, metavar="FILE",
                   help="the image of the workload 'replay' (replay:<image> names its own)")
    p.add_argument("--mix", default=None, help="replay: replace:W,slice:W,words:W "
                   f"(default {Q.REPLAY_MIX_DEFAULT})")
    p.add_argument("--replay-rate", default=None,
                   help="replay: MiB/s of dirtied pages, or <N>p pages/s (guest default 8)")
    p.add_argument("--round-dump", default=None, metavar="DIR",
                   help="record every migration's re-sent pages per round into "
                        "DIR/<workload>-<link>-<method>-r<rep>.rd.zst (docs/ROUNDS.md; "
                        "the snapshots cost time: not for timing runs)")
    p.add_argument("--verdict", action="store_true",
                   help="end with one plain verdict line per metric and link (scripts/demo.sh)")
    p.add_argument("--low-rate", type=float, default=LOW_RATE, help="memwrite-low MiB/s (default %(default)s)")
    p.add_argument("--high-rate", type=float, default=HIGH_RATE, help="memwrite-high MiB/s (default %(default)s)")
    p.add_argument("--mem", type=int, default=384, help="guest RAM MiB (default %(default)s)")
    p.add_argument("--channels", type=int, default=2, help="multifd channels (default %(default)s)")
    p.add_argument("--timeout", type=float, default=120,
                   help="seconds before a migration is cancelled = did not converge (default %(default)s)")
    p.add_argument("--downtime-limit", type=int, default=300, help="ms (default %(default)s)")
    p.add_argument("--settle", type=float, default=3, help="s of workload after boot before the first migration")
    p.add_argument("--gap", type=float, default=3, help="s of workload between two migrations of one source")
    p.add_argument("--boot-timeout", type=float, default=400)
    p.add_argument("--fresh-source", action="store_true",
                   help="boot a new source QEMU for every migration (slower)")
    p.add_argument("--qemu", default=None, help="patched qemu-system-x86_64")
    p.add_argument("--guest", default=None, help="guest dir (default: harness/build-guest.sh)")
    p.add_argument("--qemu-arg", action="append", default=[])
    p.add_argument("--out", default=DEFAULT_OUT, help="output dir (default docs/results)")
    p.add_argument("--workdir", default=None, help="logs (default /tmp/mecom-bench/<time>-<pid>)")
    p.add_argument("--append", action="store_true", help="add to an existing CSV instead of replacing it")
    p.add_argument("--report-only", action="store_true", help="regenerate md/png from the existing CSV")
    p.add_argument("--dry-run", action="store_true", help="print the run order and exit")
    return p


def resolve(args):
    sc = dict(SCENARIOS[args.scenario])
    if args.quick:
        sc.update(QUICK)
    workloads = args.workloads.split(",") if args.workloads else sc["workloads"]
    workloads = [w.strip() for w in workloads if w.strip()]
    for w in workloads:
        try:
            spec = workload_spec(w, image=args.image)
        except ValueError as e:
            raise SystemExit(str(e))
        if spec["image"] and not args.dry_run:
            Q.resolve_image(spec["image"])      # a missing image stops the run here
    methods = args.methods.split(",") if args.methods else sc["methods"]
    methods = [m.strip() for m in methods if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r} (have {', '.join(METHODS)})")
    links = parse_links(args.links or sc["links"])
    repeats = args.repeats if args.repeats is not None else sc["repeats"]
    return workloads, methods, links, repeats


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    workloads, methods, links, repeats = resolve(args)
    os.makedirs(args.out, exist_ok=True)
    prefix = output_prefix(args.out, args.scenario, args.link_mode)
    csv_path = prefix + ".csv"
    title = SCENARIO_TITLES.get(args.scenario, args.scenario) + f" ({args.link_mode})"
    cmdline = "harness/bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.report_only:
        if not os.path.exists(csv_path):
            raise SystemExit(f"no CSV at {csv_path}")
        md = report(csv_path, prefix, title)
        print(md or "")
        return 0
    groups = plan(repeats, workloads, [lk for lk, _ in links], methods)
    if args.dry_run:
        for gr in groups:
            for link, ms in gr["cells"]:
                print(f"rep {gr['repeat']} {gr['workload']:>16} {link:>5}: {' '.join(ms)}")
        print(f"{len(groups)} source boots, {sum(len(ms) for g in groups for _, ms in g['cells'])} migrations")
        return 0
    if not args.qemu:
        raise SystemExit("--qemu is required (scripts/bench-migration.sh finds it)")
    if args.link_mode == "tc" and os.geteuid() != 0:
        raise SystemExit("--link-mode tc needs root (ip netns, tc)")
    Q.install_cleanup()
    t0 = time.monotonic()
    interrupted = False
    try:
        rows = run_matrix(args, groups, dict(links), csv_path)
    except KeyboardInterrupt:
        interrupted = True
        Q.log("interrupted; report from the rows so far")
        rows = read_csv(csv_path) if os.path.exists(csv_path) else []
    md = report(csv_path, prefix, title, cmdline) if rows else None
    print(md or "no results")
    if args.verdict and rows:
        print("\n".join(verdict_lines(rows)))
    bad = [r for r in rows if str(r.get("ram_identical")) == "0"]
    failed = [r for r in rows if str(r.get("ok")) != "1"]
    Q.log(f"{len(rows)} migrations in {(time.monotonic() - t0) / 60:.1f} min; "
          f"{len(failed)} failed; CSV {csv_path}")
    if bad:
        print(f"\n!!! RAM DIFFERS in {len(bad)} migration(s): "
              + ", ".join(f"{r['workload']}/{r['method']}/{r['link']} r{r['repeat']}" for r in bad),
              file=sys.stderr)
    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
