#!/usr/bin/env python3
"""mecom end-to-end live-migration harness.

Boots a source and a destination QEMU on this machine (guest RAM in
/dev/shm files), live-migrates the running test guest with multifd and a
chosen compression method, then compares the entire guest RAM of both sides
byte for byte.  Standard library only.  See docs/harness.md.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import rounds
import tls
from qemu import (FIRMWARE_DIRS, HEARTBEAT, REPLAY_MIX_DEFAULT, HarnessError, QMPError, Qemu,
                  cleanup_all, free_port, guest_files, install_cleanup, kernel_cmdline, log,
                  parse_mix, raw_image, resolve_image, start_incoming, start_migration,
                  track_shm, wait_heartbeat, wait_workload)

PAGE = 4096
# query-migrate poll interval while recording round dumps (catch each sync).
ROUND_DUMP_POLL = 0.02

# query-migrate members that are not method-specific statistics.
GENERIC_QM_KEYS = {
    "status", "total-time", "downtime", "setup-time", "expected-downtime",
    "ram", "error-desc", "socket-address", "blocked-reasons",
    "cpu-throttle-percentage", "dirty-limit-throttle-time-per-round",
    "dirty-limit-ring-full-time", "postcopy-blocktime",
    "postcopy-vcpu-blocktime", "postcopy-latency", "postcopy-vcpu-latency",
    "postcopy-non-vcpu-latency", "postcopy-latency-dist",
}


# --------------------------------------------------------------------------
# CPU time of the migration threads
# --------------------------------------------------------------------------
def cpu_ticks_by_thread(pid):
    """{tid: (comm, utime+stime ticks)} for every thread of pid."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        # comm is in parentheses and may contain spaces
        lp, rp = st.index("("), st.rindex(")")
        comm = st[lp + 1:rp]
        fields = st[rp + 2:].split()
        out[int(tid)] = (comm, int(fields[11]) + int(fields[12]))
    return out


def proc_cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return None
    fields = st[st.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


CLK_TCK = os.sysconf("SC_CLK_TCK")


class ThreadCpuTracker:
    """Tracks CPU time of migration threads (mig/..., multifd...), which exit
    when the migration ends, by sampling /proc and keeping each thread's max."""

    def __init__(self, pid):
        self.pid = pid
        self.base = {tid: t for tid, (c, t) in cpu_ticks_by_thread(pid).items()}
        self.last = {}
        self.proc0 = proc_cpu_ticks(pid)
        self.proc1 = self.proc0

    def sample(self):
        for tid, (comm, t) in cpu_ticks_by_thread(self.pid).items():
            if comm.startswith("mig/") or comm.startswith("multifd") or comm == "live_migration":
                self.last[tid] = (comm, t - self.base.get(tid, 0))
        p = proc_cpu_ticks(self.pid)
        if p is not None:
            self.proc1 = p

    def summary(self):
        groups = {}
        for comm, t in self.last.values():
            key = re.sub(r"_?\d+$", "", comm)
            groups[key] = groups.get(key, 0.0) + t / CLK_TCK
        proc = None
        if self.proc0 is not None and self.proc1 is not None:
            proc = (self.proc1 - self.proc0) / CLK_TCK
        return {"threads_s": {k: round(v, 2) for k, v in sorted(groups.items())},
                "process_s": None if proc is None else round(proc, 2)}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def parse_value(v):
    lv = v.lower()
    if lv in ("true", "on", "yes"):
        return True
    if lv in ("false", "off", "no"):
        return False
    if re.fullmatch(r"-?\d+", v):
        return int(v)
    return v


def parse_kv_list(items):
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"expected key=value, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


def parse_bandwidth(s):
    """bytes/s.  Plain number = bytes/s; k/m/g/t (lower or upper case, no 'B')
    = bits/s (decimal: 1g = 1e9 bit/s = 125e6 B/s); KB/MB/GB = decimal bytes/s;
    KiB/MiB/GiB = binary bytes/s; 0/unlimited = no limit (0)."""
    s = s.strip()
    if s.lower() in ("0", "unlimited", "none", "inf"):
        return 0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z/]*)", s)
    if not m:
        raise argparse.ArgumentTypeError(f"bad bandwidth {s!r}")
    num, unit = float(m.group(1)), m.group(2)
    unit = re.sub(r"(?i)(/s|ps|bit/s|bps|bit)$", "", unit)
    dec = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
    bin_ = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if unit in ("", "B", "b"):
        return int(num)
    u = unit.lower()
    if len(unit) == 1:
        return int(num * dec[u] / 8)  # bits per second
    if re.fullmatch(r"(?i)[kmgt]ib", unit):
        return int(num * bin_[u[0]])
    if re.fullmatch(r"(?i)[kmgt]b", unit):
        if unit[1] == "B":
            return int(num * dec[u[0]])
        return int(num * dec[u[0]] / 8)  # "Gb" = gigabit
    raise argparse.ArgumentTypeError(f"bad bandwidth unit {unit!r}")


# Differing pages kept (both sides) after a RAM mismatch: 256 pairs = 2 MiB.
DIFF_PAGES_KEPT = 256


def compare_ram(a, b, chunk=16 << 20, max_list=16, keep=0):
    """Compare two files page by page.  Returns dict with identical, pages
    compared, differing page count, first differing offset, a short list
    (max_list offsets) and, with keep, the first `keep` offsets as
    kept_offsets (for save_diff_pages)."""
    sa, sb = os.path.getsize(a), os.path.getsize(b)
    res = {"size_src": sa, "size_dst": sb, "diff_pages": 0,
           "first_diff_offset": None, "diff_offsets": []}
    kept = []
    for idx, _, _ in rounds.iter_diff_pages(a, b, PAGE, chunk):
        res["diff_pages"] += 1
        if res["first_diff_offset"] is None:
            res["first_diff_offset"] = idx * PAGE
        if len(res["diff_offsets"]) < max_list:
            res["diff_offsets"].append(hex(idx * PAGE))
        if len(kept) < keep:
            kept.append(hex(idx * PAGE))
    if keep:
        res["kept_offsets"] = kept
    res["pages"] = (max(sa, sb) + PAGE - 1) // PAGE
    res["identical"] = sa == sb and res["diff_pages"] == 0
    return res


def save_diff_pages(a, b, offsets, dest):
    """Copy the differing pages (hex offsets from compare_ram) of both RAM
    files into dest as src-<offset>.bin / dst-<offset>.bin, so a mismatch
    can be studied after the QEMUs and their RAM files are gone."""
    os.makedirs(dest, exist_ok=True)
    saved = []
    for side, path in (("src", a), ("dst", b)):
        with open(path, "rb") as f:
            for off in offsets:
                f.seek(int(off, 16))
                name = os.path.join(dest, f"{side}-{off}.bin")
                with open(name, "wb") as out:
                    out.write(f.read(PAGE))
                saved.append(name)
    return saved


def kernel_append(opts, workload):
    mix = getattr(opts, "mix", None) if workload == "replay" else None
    dirty = getattr(opts, "dirty", None) if workload == "memwrite" else None
    cmdline = kernel_cmdline(workload, wss=opts.wss, rate=opts.rate, data=opts.data, mix=mix,
                             dirty=dirty)
    return f"{cmdline} {opts.append}" if opts.append else cmdline


def round_dump_path(base, workload, method, channels, rep, multi):
    """--round-dump FILE as is for a single run; with several runs,
    FILE-<workload>-<method>-<N>ch-r<rep> before its extensions."""
    if not multi:
        return base
    d, name = os.path.split(base)
    stem, dot, ext = name.partition(".")
    return os.path.join(d, f"{stem}-{workload}-{method}-{channels}ch-r{rep}{dot}{ext}")


# --------------------------------------------------------------------------
# one migration experiment
# --------------------------------------------------------------------------
def method_params(opts, method, channels, side):
    p = {"multifd-channels": channels, "multifd-compression": method}
    if opts.zlib_level is not None:
        p["multifd-zlib-level"] = opts.zlib_level
    if opts.zstd_level is not None:
        p["multifd-zstd-level"] = opts.zstd_level
    p.update(opts.params)
    p.update(opts.src_params if side == "src" else opts.dst_params)
    return p


def configure(vm, opts, method, channels, side):
    caps = [{"capability": "multifd", "state": True}]
    tls_params = {}
    if getattr(opts, "tls_dir", None):
        tls_params = tls.add_creds(vm, opts.tls_dir, side)
    for k, v in opts.caps.items():
        caps.append({"capability": k, "state": bool(v)})
    vm.qmp.execute("migrate-set-capabilities", {"capabilities": caps})
    # --param/--src-param/--dst-param may override TLS (tls-creds= turns it off)
    params = dict(tls_params, **method_params(opts, method, channels, side))
    if side == "src":
        params["max-bandwidth"] = opts.max_bandwidth
        params["downtime-limit"] = opts.downtime_limit
    vm.qmp.execute("migrate-set-parameters", params)
    return params


def migrate_and_wait(src, dst, uri, opts, result, observer=None):
    """Issue `migrate` and poll until completed/failed/timeout.  Fills result.
    An observer (rounds.RoundRecorder) sees every query-migrate answer
    (observer.poll(info)) and the end (observer.finish(status, syncs))."""
    src_cpu = ThreadCpuTracker(src.proc.pid)
    dst_cpu = ThreadCpuTracker(dst.proc.pid)
    start_migration(src, uri)
    t0 = time.monotonic()
    last = {}
    last_active = {}  # last snapshot that had RAM stats (kept if it is cancelled/fails)
    max_seen = {}
    status = None
    while True:
        src_cpu.sample()
        dst_cpu.sample()
        try:
            info = src.qmp.execute("query-migrate")
        except HarnessError:
            if not src.alive():
                raise HarnessError(f"source QEMU died during migration: {src.stderr_tail()}")
            raise
        status = info.get("status")
        last = info
        if observer is not None:
            observer.poll(info)
        if info.get("ram"):
            last_active = info
        ram = info.get("ram") or {}
        for k in ("mbps", "dirty-pages-rate", "pages-per-second"):
            if k in ram:
                max_seen[k] = max(max_seen.get(k, 0), ram[k])
        if status in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() - t0 > opts.timeout:
            log(f"migration did not converge within {opts.timeout}s; migrate_cancel")
            try:
                src.qmp.execute("migrate_cancel")
            except QMPError:
                pass
            for _ in range(100):
                st = src.qmp.execute("query-migrate").get("status")
                if st in ("cancelled", "failed", "completed"):
                    break
                time.sleep(0.1)
            last = src.qmp.execute("query-migrate")
            status = "did-not-converge"
            break
        time.sleep(opts.poll)
    wall = time.monotonic() - t0
    if observer is not None:
        observer.finish(status, (last.get("ram") or {}).get("dirty-sync-count"))

    # Destination side: wait until it has finished loading (or failed).
    dst_info = {}
    dst_deadline = time.monotonic() + (opts.dst_timeout if status == "completed" else 10)
    while dst.alive():
        dst_cpu.sample()
        try:
            dst_info = dst.qmp.execute("query-migrate")
        except Exception:
            break
        if dst_info.get("status") in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() > dst_deadline:
            break
        time.sleep(opts.poll)

    result["status"] = status
    result["migrate_wall_s"] = round(wall, 2)
    result["total_time_ms"] = last.get("total-time")
    result["downtime_ms"] = last.get("downtime")
    result["setup_time_ms"] = last.get("setup-time", last_active.get("setup-time"))
    result["ram"] = last.get("ram") or last_active.get("ram", {})
    if not last.get("ram") and last_active.get("ram"):
        result["ram_stats_from"] = f"last {last_active.get('status')} snapshot"
    result["peak"] = max_seen
    if status != "completed" and last_active:
        last = dict(last_active, **last)
    result["method_stats"] = {k: v for k, v in last.items()
                              if k not in GENERIC_QM_KEYS and isinstance(v, (dict, list))}
    result["other"] = {k: v for k, v in last.items()
                       if k not in GENERIC_QM_KEYS and not isinstance(v, (dict, list))}
    if "error-desc" in last:
        result["src_error"] = last["error-desc"]
    result["dst_migrate_status"] = dst_info.get("status") if dst.alive() else "exited"
    if "error-desc" in dst_info:
        result["dst_error"] = dst_info["error-desc"]
    if not dst.alive():
        result["dst_error"] = (result.get("dst_error", "") +
                               f" dst exited rc={dst.proc.returncode}: {dst.stderr_tail()}").strip()
    result["cpu"] = {"src": src_cpu.summary(), "dst": dst_cpu.summary()}
    return status


def verify_after_success(src, dst, opts, result):
    ok = True
    src_st = src.status()
    result["src_status_after"] = src_st.get("status")
    if result.get("dst_migrate_status") != "completed":
        result["error"] = f"destination did not complete loading (status {result.get('dst_migrate_status')})"
        return False
    dst_st = dst.status()
    result["dst_status_after"] = dst_st.get("status")
    if dst_st.get("running"):
        # Should not happen: destination was started with -S.
        result["error"] = "destination is running before RAM comparison"
        ok = False
    if src_st.get("running"):
        result["error"] = "source still running after completed migration"
        ok = False
    t = time.monotonic()
    cmp = compare_ram(src.shm, dst.shm, keep=DIFF_PAGES_KEPT)
    kept = cmp.pop("kept_offsets")
    result["compare_s"] = round(time.monotonic() - t, 2)
    result["ram_identical"] = cmp["identical"]
    result["ram_compare"] = cmp
    if not cmp["identical"]:
        ok = False
        result["error"] = (f"RAM differs: {cmp['diff_pages']} of {cmp['pages']} pages, "
                           f"first at {hex(cmp['first_diff_offset'] or 0)}")
        dest = os.path.join(dst.workdir, f"{dst.role}.diff-pages")
        try:
            result["diff_pages_saved"] = dest if save_diff_pages(
                src.shm, dst.shm, kept, dest) else None
            result["diff_pages_kept"] = len(kept)
        except OSError as e:
            result["diff_pages_saved"] = f"not saved: {e}"
    if opts.cont_check and ok:
        before = dst.serial().count(HEARTBEAT)
        dst.qmp.execute("cont")
        alive = wait_heartbeat(dst, opts.cont_timeout, before)
        result["dst_heartbeat_after_cont"] = alive
        if not alive:
            ok = False
            result["error"] = f"destination printed no heartbeat within {opts.cont_timeout}s of cont"
    return ok


def parse_expect_stat(text):
    """'cbc.pages-delta>0' -> (['cbc', 'pages-delta'], 0): a statistic of
    query-migrate (a path into the method's member) that must exceed a
    number."""
    path, sep, bound = text.partition(">")
    keys = [k for k in path.strip().split(".") if k]
    if not sep or len(keys) < 2:
        raise argparse.ArgumentTypeError(f"'{text}': want METHOD.KEY>N, e.g. cbc.pages-delta>0")
    try:
        return keys, float(bound)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': '{bound}' is not a number") from None


def check_expected_stats(expects, method, method_stats):
    """The first --expect-stat that the run of `method` misses, as an
    error text, or None.  An expectation names its method first and
    applies only to runs of that method."""
    for keys, bound in expects:
        if keys[0] != method:
            continue
        value = method_stats
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if not isinstance(value, (int, float)) or value <= bound:
            return f"query-migrate {'.'.join(keys)} = {value}, expected > {bound:g}"
    return None


def judge(src, dst, opts, result, status):
    """After migrate_and_wait: verify a completed migration, or record why it
    did not complete.  Returns result["ok"]."""
    if status == "completed":
        result["ok"] = verify_after_success(src, dst, opts, result)
        missed = check_expected_stats(opts.expect_stat, result.get("method"),
                                      result.get("method_stats", {}))
        if result["ok"] and missed:
            result["ok"] = False
            result["error"] = missed
    elif status == "did-not-converge":
        result["error"] = f"did not converge within {opts.timeout:g}s (cancelled)"
    else:
        result["error"] = (f"migration {status}: src: {result.get('src_error', '')} "
                           f"dst: {result.get('dst_error', '')}").strip()
    return result["ok"]


def run_one(opts, guest, workload, method, dst_method, channels, rep, run_seq, workdir_base):
    run_id = f"{os.getpid()}-{run_seq}"
    workdir = os.path.join(workdir_base, f"{run_seq:03d}-{workload}-{method}-{channels}ch-r{rep}")
    os.makedirs(workdir, exist_ok=True)
    append = kernel_append(opts, workload)
    g = {"kernel": guest[0], "initrd": guest[1], "append": append}
    results = []
    base = {"workload": workload, "method": method, "dst_method": dst_method,
            "channels": channels, "repeat": rep, "mem_mib": opts.mem,
            "workdir": workdir, "expect_fail": opts.expect_fail}
    src = dst = None
    res = dict(base, phase="main", ok=False)
    results.append(res)
    try:
        t_boot = time.monotonic()
        if opts.tls:
            opts.tls_dir = tls.make_certs(os.path.join(workdir, "tls"))
        src = Qemu("src", run_id, opts, g, workdir).start()
        dst = Qemu("dst", run_id, opts, g, workdir, incoming=True).start()
        res["qemu_version"] = src.qmp.version.get("qemu")
        res["src_params"] = configure(src, opts, method, channels, "src")
        res["dst_params"] = configure(dst, opts, dst_method, channels, "dst")
        if opts.tls:
            # What QEMU will use, not what the harness meant to set: a
            # --tls run whose destination has no credentials tested nothing.
            res["tls_creds"] = {vm.role: vm.qmp.execute("query-migrate-parameters").get("tls-creds")
                                for vm in (src, dst)}
            if res["tls_creds"]["dst"] != tls.CREDS_ID:
                raise HarnessError(f"--tls, but the destination's tls-creds is "
                                   f"{res['tls_creds']['dst']!r}")
        uri = start_incoming(dst, free_port())
        res["marker"] = wait_workload(src, opts.boot_timeout)
        res["boot_s"] = round(time.monotonic() - t_boot, 1)
        log(f"  guest ready after {res['boot_s']}s: {res['marker']}")
        time.sleep(opts.settle)
        log(f"  migrate {method}->{dst_method} channels={channels} to {uri}")
        recorder = None
        if opts.round_dump:
            res["round_dump"] = round_dump_path(opts.round_dump, workload, method, channels, rep,
                                                opts.multi_run)
            recorder = rounds.RoundRecorder(src.shm, res["round_dump"], track=track_shm)
        status = migrate_and_wait(src, dst, uri, opts, res, recorder)
        if recorder is not None:
            log(f"  round dump {res['round_dump']}: rounds (sync from-to, pages) "
                + ", ".join(f"{r[1]}-{r[2]}:{r[3]}" for r in recorder.log))

        if opts.expect_fail:
            src_st = src.status()
            res["src_status_after"] = src_st.get("status")
            res["src_running_after"] = src_st.get("running")
            if status == "failed" and src_st.get("running"):
                res["ok"] = True
                # A refusal before the incoming migration starts (a TLS
                # handshake) is only on the destination's stderr.
                said = f"{res.get('dst_error') or ''}\n{dst.stderr_tail()}"
                if opts.expect_error and not re.search(opts.expect_error, said):
                    res["ok"] = False
                    res["error"] = (f"failed, but the destination's error does not match "
                                    f"{opts.expect_error!r}")
                # The guest must still be making progress, not just "running".
                res["src_heartbeat_after_fail"] = wait_heartbeat(src, opts.cont_timeout)
                if not res["src_heartbeat_after_fail"]:
                    res["ok"] = False
                    res["error"] = "source reports running but its guest printed no heartbeat"
                log(f"  failed as expected; source still {src_st.get('status')}"
                    f" (src error: {res.get('src_error')}; dst error: {res.get('dst_error')})")
            elif status == "failed":
                res["error"] = f"failed as expected, but source is {src_st.get('status')}, not running"
            else:
                res["error"] = f"expected failure, got {status}"
            dst.stop()
            if opts.retry and status in ("failed", "cancelled"):
                # Retry with matching settings to a fresh destination.
                rres = dict(base, phase="retry", dst_method=method, ok=False, expect_fail=False)
                results.append(rres)
                dst = Qemu("dst2", run_id, opts, g, workdir, incoming=True).start()
                saved = opts.dst_params
                opts.dst_params = opts.src_params
                try:
                    rres["dst_params"] = configure(dst, opts, method, channels, "dst")
                finally:
                    opts.dst_params = saved
                uri = start_incoming(dst, free_port())
                time.sleep(opts.settle)
                log(f"  retry {method}->{method} channels={channels} to {uri}")
                status = migrate_and_wait(src, dst, uri, opts, rres)
                if status == "completed":
                    rres["ok"] = verify_after_success(src, dst, opts, rres)
                else:
                    rres["error"] = f"retry migration {status}: {rres.get('src_error', '')}"
        else:
            judge(src, dst, opts, res, status)
    except HarnessError as e:
        results[-1]["error"] = str(e)
        results[-1]["status"] = results[-1].get("status", "harness-error")
    except QMPError as e:
        results[-1]["error"] = f"QMP {e}"
        results[-1]["status"] = results[-1].get("status", "qmp-error")
    finally:
        for vm in (dst, src):
            if vm is not None:
                vm.stop()
    for r in results:
        tag = "OK " if r["ok"] else "FAIL"
        extra = f" ({r['error']})" if r.get("error") else ""
        log(f"  {tag} {r['phase']}: status={r.get('status')} total={fmt(r.get('total_time_ms'))} ms "
            f"downtime={fmt(r.get('downtime_ms'))} ms identical={fmt(r.get('ram_identical'))}{extra}")
    return results


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------
def fmt(v, nd=0):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def print_table(results, out=sys.stdout):
    cols = [("workload", "workload"), ("method", "method"), ("ch", "ch"), ("rep", "rep"),
            ("phase", "phase"), ("result", "result"), ("total_ms", "total ms"),
            ("down_ms", "down ms"), ("setup_ms", "setup ms"), ("mb", "MB xfer"),
            ("mfd_mb", "multifd MB"), ("ratio", "ratio"), ("syncs", "syncs"),
            ("normal", "normal pg"), ("dup", "dup pg"), ("scpu", "src mig cpu s"),
            ("dcpu", "dst cpu s"), ("ident", "RAM identical")]
    rows = []
    for r in results:
        ram = r.get("ram") or {}
        m = r["method"] if r.get("dst_method") in (None, r["method"]) else f"{r['method']}->{r['dst_method']}"
        mb = ram.get("transferred")
        normal_bytes = ram.get("normal-bytes")
        ratio = None
        if mb and normal_bytes:
            ratio = normal_bytes / mb
        scpu = (r.get("cpu") or {}).get("src", {}).get("threads_s") or {}
        dcpu = (r.get("cpu") or {}).get("dst", {}).get("process_s")
        if r.get("expect_fail") and r.get("phase") == "main":
            result = "failed-as-expected" if r["ok"] else f"UNEXPECTED:{r.get('status')}"
        else:
            result = r.get("status") or "error"
            if not r["ok"]:
                result = f"FAIL:{result}"
        rows.append({
            "workload": r["workload"], "method": m, "ch": r["channels"], "rep": r["repeat"],
            "phase": r["phase"], "result": result,
            "total_ms": fmt(r.get("total_time_ms")), "down_ms": fmt(r.get("downtime_ms")),
            "setup_ms": fmt(r.get("setup_time_ms")),
            "mb": fmt(None if mb is None else mb / 1e6, 1),
            "mfd_mb": fmt(None if ram.get("multifd-bytes") is None else ram["multifd-bytes"] / 1e6, 1),
            "ratio": fmt(ratio, 2),
            "syncs": fmt(ram.get("dirty-sync-count")), "normal": fmt(ram.get("normal")),
            "dup": fmt(ram.get("duplicate")),
            "scpu": fmt(sum(scpu.values()) if scpu else None, 2), "dcpu": fmt(dcpu, 2),
            "ident": "-" if r.get("ram_identical") is None else fmt(r["ram_identical"]),
        })
    widths = {k: max(len(h), *(len(str(row[k])) for row in rows)) if rows else len(h) for k, h in cols}
    line = "  ".join(h.rjust(widths[k]) if k not in ("workload", "method", "phase", "result") else h.ljust(widths[k]) for k, h in cols)
    print(line, file=out)
    print("-" * len(line), file=out)
    for row in rows:
        print("  ".join(str(row[k]).rjust(widths[k]) if k not in ("workload", "method", "phase", "result")
                        else str(row[k]).ljust(widths[k]) for k, _ in cols), file=out)
    extra = [(r, dict(r.get("other") or {}, **r["method_stats"]))
             for r in results if r.get("method_stats") or r.get("other")]
    if extra:
        print("\nmethod-specific query-migrate members:", file=out)
        for r, ms in extra:
            print(f"  {r['workload']} {r['method']} ch={r['channels']} rep={r['repeat']} {r['phase']}: "
                  f"{json.dumps(ms, sort_keys=True)}", file=out)
    failures = [r for r in results if not r["ok"]]
    if failures:
        print("\nfailures:", file=out)
        for r in failures:
            print(f"  {r['workload']} {r['method']}->{r.get('dst_method')} ch={r['channels']} "
                  f"rep={r['repeat']} {r['phase']}: {r.get('error')}  [logs: {r['workdir']}]", file=out)


# --------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(
        description="mecom live-migration harness: migrate a test guest between two local "
                    "QEMUs with multifd compression and verify guest RAM byte for byte.",
        epilog="See docs/harness.md for details and output fields.")
    g = p.add_argument_group("what to run")
    g.add_argument("--methods", "--method", dest="methods", default="none,zlib,zstd",
                   help="comma list of multifd-compression methods, e.g. none,zlib,zstd,cbc "
                        "(default %(default)s)")
    g.add_argument("--channels", default="2", help="comma list of multifd-channels values (default %(default)s)")
    g.add_argument("--workload", "--workloads", dest="workloads", default=None,
                   help="comma list of guest workloads: idle,memwrite,compile,sort,replay "
                        "(default memwrite; replay with --image)")
    g.add_argument("--repeat", type=int, default=1, help="repetitions of each combination (default 1)")
    g.add_argument("--dst-method", default=None,
                   help="destination's multifd-compression (default: same as source)")
    g.add_argument("--expect-fail", action="store_true",
                   help="the migration is expected to fail; then check the source is still "
                        "running and retry with matching settings to a fresh destination")
    g.add_argument("--no-retry", dest="retry", action="store_false",
                   help="with --expect-fail: skip the retry")
    g.add_argument("--expect-error", default=None, metavar="REGEX",
                   help="with --expect-fail: the destination's error (query-migrate, or "
                        "else its stderr) must match REGEX (says which check failed it)")
    g.add_argument("--mismatch", action="store_true",
                   help="shortcut: --expect-fail with --dst-method none (zlib if source is none)")

    g.add_argument("--expect-stat", action="append", default=[], type=parse_expect_stat,
                   metavar="METHOD.KEY>N",
                   help="a completed run of METHOD fails unless its query-migrate "
                        "statistic METHOD.KEY exceeds N, e.g. cbc.pages-delta>0; repeatable")
    g = p.add_argument_group("migration parameters")
    g.add_argument("--zlib-level", type=int, default=None, help="multifd-zlib-level (both sides)")
    g.add_argument("--zstd-level", type=int, default=None, help="multifd-zstd-level (both sides)")
    g.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="extra migrate-set-parameters member for both sides, e.g. "
                        "multifd-cbc-mode=fixed (ints/bools converted); repeatable")
    g.add_argument("--src-param", action="append", default=[], metavar="KEY=VALUE",
                   help="like --param, source only (overrides --param)")
    g.add_argument("--dst-param", action="append", default=[], metavar="KEY=VALUE",
                   help="like --param, destination only (overrides --param)")
    g.add_argument("--tls", action="store_true",
                   help="migrate over TLS: fresh test certificates (harness/tls.py), "
                        "tls-creds-x509 on both sides, the destination verifying the source's")
    g.add_argument("--capability", action="append", default=[], metavar="NAME=on|off",
                   help="extra migration capability for both sides; repeatable")
    g.add_argument("--max-bandwidth", type=parse_bandwidth, default="unlimited",
                   help="source max-bandwidth: bytes/s, or 1g/10g/500m = Gbit/s / Mbit/s, "
                        "100MB/1GiB = bytes/s, unlimited/0 = no limit (default unlimited)")
    g.add_argument("--downtime-limit", type=int, default=300, help="source downtime-limit in ms (default 300)")
    g.add_argument("--timeout", type=float, default=300,
                   help="seconds before an active migration is cancelled as 'did not converge' "
                        "(default 300)")

    g = p.add_argument_group("guest / QEMU")
    g.add_argument("--qemu", default=shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
                   help="qemu-system-x86_64 binary, installed or build tree (default %(default)s)")
    g.add_argument("--no-firmware-dirs", action="store_true",
                   help=f"do not pass -L for existing {', '.join(FIRMWARE_DIRS)}")
    g.add_argument("--qemu-arg", action="append", default=[],
                   help="extra QEMU arguments for both sides (shell-split); repeatable")
    g.add_argument("--mem", type=int, default=512, help="guest RAM in MiB (default 512)")
    g.add_argument("--kvm", action="store_true", help="use -accel kvm (default TCG)")
    g.add_argument("--cpu", default=None, help="-cpu model (default: QEMU's for TCG, host for KVM)")
    g.add_argument("--guest", default=None,
                   help="guest dir with vmlinuz/initrd.img (default: run harness/build-guest.sh)")
    g.add_argument("--kernel", default=None, help="kernel image (overrides --guest)")
    g.add_argument("--initrd", default=None, help="initramfs (overrides --guest)")
    g.add_argument("--wss", type=int, default=None,
                   help="guest working set MiB (mecom.wss; guest default 50%% of its RAM)")
    g.add_argument("--rate", default=None,
                   help="mecom.rate: memwrite MiB/s or Np pages/s, compile MiB/s, 0=unlimited")
    g.add_argument("--data", default=None,
                   help="mecom.data for memwrite: mixed|random|text|ints|ptrs|sparse|zero|k:w,...")
    g.add_argument("--append", default="", help="extra kernel command line (e.g. mecom.hb=1)")
    g.add_argument("--image", default=None, metavar="FILE",
                   help="RAM image for the replay workload, attached as a read-only virtio "
                        "disk: raw 4 KiB pages, a .zst of them, or a corpus name "
                        "(compile, sort, idle, randwrite)")
    g.add_argument("--mix", default=None,
                   help=f"replay: how pages change, replace:W,slice:W,words:W "
                        f"(default {REPLAY_MIX_DEFAULT})")

    g = p.add_argument_group("harness")
    g.add_argument("--boot-timeout", type=float, default=300,
                   help="seconds to wait for the workload marker (default 300)")
    g.add_argument("--settle", type=float, default=3, help="seconds the workload runs before migrate (default 3)")
    g.add_argument("--dst-timeout", type=float, default=60,
                   help="seconds to wait for the destination to finish loading (default 60)")
    g.add_argument("--poll", type=float, default=0.1, help="query-migrate poll interval in s (default 0.1)")
    g.add_argument("--no-cont-check", dest="cont_check", action="store_false",
                   help="skip 'cont' on the destination + heartbeat check after comparing RAM")
    g.add_argument("--cont-timeout", type=float, default=15,
                   help="seconds to wait for a guest heartbeat after 'cont' (default 15)")
    g.add_argument("--workdir", default=None,
                   help="directory for QMP sockets, serial and stderr logs "
                        "(default /tmp/mecom-harness/<time>-<pid>)")
    g.add_argument("--keep-ram", action="store_true",
                   help="keep the /dev/shm RAM files (debugging; they are large)")
    g.add_argument("--json", default=None, metavar="FILE", help="write all results as JSON")
    g.add_argument("--round-dump", default=None, metavar="FILE",
                   help="record the pages re-sent in each dirty-sync round with their previous "
                        "version (docs/ROUNDS.md; FILE.zst = zstd-compressed); several runs "
                        "get FILE-<workload>-<method>-<N>ch-r<rep>")
    return p


def parse_opts(argv=None):
    """The options of a run (also for bench.py and faults.py), with what
    they imply: parsed --param/--src-param/--dst-param/--capability,
    --mismatch's --expect-fail and the QEMU binary's full path."""
    opts = build_parser().parse_args(argv)
    if isinstance(opts.max_bandwidth, str):
        opts.max_bandwidth = parse_bandwidth(opts.max_bandwidth)
    opts.params = parse_kv_list(opts.param)
    opts.src_params = parse_kv_list(opts.src_param)
    opts.dst_params = parse_kv_list(opts.dst_param)
    opts.caps = parse_kv_list(opts.capability)
    if opts.mismatch:
        opts.expect_fail = True
    if opts.workloads is None:
        opts.workloads = "replay" if opts.image else "memwrite"
    try:
        opts.mix = parse_mix(opts.mix) if opts.mix else None
    except ValueError as e:
        raise SystemExit(f"--mix: {e}")
    if "replay" in opts.workloads.split(",") and not opts.image:
        raise SystemExit("the replay workload needs --image FILE")
    opts.image_raw = raw_image(resolve_image(opts.image)) if opts.image else None
    if not os.path.exists(opts.qemu) and not shutil.which(opts.qemu):
        raise SystemExit(f"QEMU binary not found: {opts.qemu}")
    opts.qemu = os.path.abspath(opts.qemu) if os.path.exists(opts.qemu) else shutil.which(opts.qemu)
    return opts


def main(argv=None):
    opts = parse_opts(argv)
    methods = [m.strip() for m in opts.methods.split(",") if m.strip()]
    channels = [int(c) for c in opts.channels.split(",") if c.strip()]
    workloads = [w.strip() for w in opts.workloads.split(",") if w.strip()]
    opts.multi_run = len(methods) * len(channels) * len(workloads) * opts.repeat > 1
    if opts.round_dump:
        opts.poll = min(opts.poll, ROUND_DUMP_POLL)
    install_cleanup(keep_ram=opts.keep_ram)

    kernel, initrd, gdir = guest_files(opts)
    workdir_base = opts.workdir or os.path.join(
        "/tmp/mecom-harness", time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}")
    os.makedirs(workdir_base, exist_ok=True)
    qv = subprocess.run([opts.qemu, "--version"], stdout=subprocess.PIPE, text=True).stdout.splitlines()
    log(f"qemu: {opts.qemu} ({qv[0] if qv else '?'})")
    log(f"guest: {kernel} {initrd}; logs under {workdir_base}")

    all_results = []
    seq = 0
    t_start = time.monotonic()
    interrupted = False
    try:
        for workload in workloads:
            for ch in channels:
                for method in methods:
                    dst_method = opts.dst_method or method
                    if opts.mismatch and not opts.dst_method:
                        dst_method = "zlib" if method == "none" else "none"
                    for rep in range(1, opts.repeat + 1):
                        seq += 1
                        log(f"run {seq}: workload={workload} method={method}"
                            f"{'->' + dst_method if dst_method != method else ''} "
                            f"channels={ch} rep={rep}")
                        all_results += run_one(opts, (kernel, initrd), workload, method,
                                               dst_method, ch, rep, seq, workdir_base)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; cleaning up")
    finally:
        cleanup_all()

    elapsed = time.monotonic() - t_start
    if opts.json:
        doc = {"qemu": opts.qemu, "qemu_version": qv[0] if qv else None,
               "guest_dir": gdir, "kernel": kernel, "initrd": initrd,
               "argv": sys.argv[1:] if argv is None else argv,
               "elapsed_s": round(elapsed, 1), "interrupted": interrupted,
               "results": all_results}
        if gdir and os.path.exists(os.path.join(gdir, "manifest")):
            with open(os.path.join(gdir, "manifest")) as f:
                doc["guest_manifest"] = dict(ln.strip().split("=", 1) for ln in f if "=" in ln)
        with open(opts.json, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
        log(f"results written to {opts.json}")
    print()
    print_table(all_results)
    n_ok = sum(1 for r in all_results if r["ok"])
    n_fail = len(all_results) - n_ok
    print(f"\n{n_ok} passed, {n_fail} failed ({elapsed:.0f}s, logs under {workdir_base})")
    if interrupted:
        return 130
    return 0 if n_fail == 0 and all_results else 1


if __name__ == "__main__":
    sys.exit(main())
