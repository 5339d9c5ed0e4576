#!/usr/bin/env python3
"""Hostile-stream and lifecycle tests of cbc live migration (docs/SECURITY.md).

  faults.py inject --qemu Q [--kinds flip,...] [--trials N]
      One source QEMU runs the test guest.  For each fault kind, N trials:
      a fresh destination, the source migrating through harness/faultproxy.py,
      which breaks one cbc packet (bit flip, truncation, connection reset,
      duplicate, reorder, random payload, replayed frame, changed length,
      dropped packet, dropped last packet before the final sync).
      Every trial in which the fault was injected must end with: the
      migration failed; the destination's error names a multifd channel
      (except after a reset, where the race is reported); the destination guest
      never ran; the source guest still running (its heartbeat advancing).
      A fault that was accepted passes only with identical RAM.  A trial whose fault never
      fired fails, and so does a run in which a kind never fired.
      After the trials of a kind, a clean migration of the same source to a
      fresh destination must complete with identical RAM, after which both
      guests are resumed and the next kind starts.

  faults.py cancel --qemu Q [--cycles N] [--cancel-bandwidth BW]
      One source QEMU.  First a whole migration at BW (measures its time T).
      Each cycle migrates through the proxy and cancels at one of four
      points in turn (CANCEL_POINTS): active (slowed to BW, at a random
      fraction of T), pre-switchover (pause-before-switchover), in the final
      multifd sync and before the final round (the proxy holding the
      destination; the source in "device").  query-migrate must report that
      state right before the cancel, or the cycle fails.  Then: the source
      runs, a migration to a fresh destination compares the whole RAM, the
      source resumes.  Records the source's RSS after every cycle and fails
      if its anonymous memory grows.

Both print a table and "N passed, N failed", and exit non-zero on failure.
Uses harness/qemu.py for QEMU, QMP and the guest, and harness/migrate.py for
the migration and the RAM comparison.
"""

import argparse
import json
import os
import random
import re
import sys
import time

import faultproxy
import migrate as M
import qemu as Q

# What the source's anonymous memory may gain per cancel/retry cycle (median
# over the second half of the run) and in all over that half.  One leaked
# migration would cost more than the median limit every cycle: each cbc
# channel holds a frame buffer and a batch copy of 512 KiB each, plus its
# codec state.  The total limit allows a few allocator steps (seen: up to
# 3 MiB in one cycle, then flat) but not a steady leak.
RSS_MEDIAN_LIMIT_KIB = 256
# Below this the second half of a run is still warm-up (about 10 cycles,
# see run_cancel), so growth is only judged from 20 cycles on.
MIN_RSS_CYCLES = 20
RSS_GROWTH_LIMIT_KIB = 16 * 1024


def harness_opts(args, extra):
    """A migrate.py option namespace for these runs."""
    workload = args.workload or ("replay" if args.image else "memwrite")
    argv = ["--qemu", args.qemu, "--mem", str(args.mem), "--workload", workload,
            "--capability", "return-path=on", "--settle", "1", "--timeout", str(args.timeout),
            "--dst-timeout", "30", "--cont-timeout", "20", "--max-bandwidth", args.max_bandwidth]
    if args.guest:
        argv += ["--guest", args.guest]
    if args.image:
        argv += ["--image", args.image]
    if args.mix:
        argv += ["--mix", args.mix]
    if workload == "memwrite":
        # memwrite's default mix, plus a tenth of pages copied from a small
        # pool, so that the `dedup` kind finds frames with dedup pages
        argv += ["--data", args.data]
    for p in args.param:
        argv += ["--param", p]
    return M.parse_opts(argv + extra)


def new_destination(opts, g, workdir, run_id, name, channels):
    dst = Q.Qemu(name, run_id, opts, g, workdir, incoming=True).start()
    M.configure(dst, opts, "cbc", channels, "dst")
    port = Q.free_port()
    Q.start_incoming(dst, port)
    return dst, port


def clean_migration(src, opts, g, workdir, run_id, name, channels):
    """Migrate `src` to a fresh destination, compare RAM, resume both."""
    res = {"phase": name, "ok": False}
    dst, port = new_destination(opts, g, workdir, run_id, name, channels)
    try:
        M.judge(src, dst, opts, res, M.migrate_and_wait(src, dst, f"tcp:127.0.0.1:{port}", opts, res))
    finally:
        dst.stop()
    st = Q.resume(src)
    res["src_running_after"] = bool(st.get("running"))
    if not st.get("running"):
        res["ok"] = False
        res["error"] = f"source did not resume: {st.get('status')}"
    return res


def boot_source(opts, g, workdir, run_id, channels):
    src = Q.Qemu("src", run_id, opts, g, workdir).start()
    M.configure(src, opts, "cbc", channels, "src")
    t = time.monotonic()
    Q.wait_workload(src, opts.boot_timeout)
    Q.log(f"guest ready after {time.monotonic() - t:.1f}s")
    time.sleep(opts.settle)
    return src


# --------------------------------------------------------------------------
# inject
# --------------------------------------------------------------------------
class SwitchoverRelease:
    """A migrate_and_wait observer for a source with pause-before-switchover:
    when the source stops at pre-switchover it calls `at_pause()` once, then
    lets the migration go on (migrate-continue)."""

    def __init__(self, src, at_pause):
        self.src = src
        self.at_pause = at_pause
        self.released = False

    def poll(self, info):
        if info.get("status") == "pre-switchover" and not self.released:
            self.released = True
            self.at_pause()
            self.src.qmp.execute("migrate-continue", {"state": "pre-switchover"})

    def finish(self, status, syncs):
        pass


def set_capability(vm, name, state):
    vm.qmp.execute("migrate-set-capabilities",
                   {"capabilities": [{"capability": name, "state": state}]})


def judge_trial(res):
    """The verdict of one inject trial from what it observed.

    Sets res["ok"] and res["error"].  A trial whose fault never fired
    tested nothing and fails.
    """
    kind, fired, status = res["kind"], res.get("injected"), res.get("status")
    problems = []
    if fired is None:
        problems.append(f"the fault never fired: the migration ended ({status}) before "
                        f"data packet {res.get('trigger')} of the trigger, so nothing was tested")
    elif status == "completed":
        # The broken stream was accepted.  That is only acceptable when it
        # gave exactly the pages that were sent (an LZ match can point at
        # either of two equal runs, so some bits of a frame do not change
        # what it decodes to): the whole-RAM comparison says.
        res["harmless"] = bool(res.get("verified") and res.get("ram_identical"))
        if not res["harmless"]:
            problems.append(f"fault not detected; RAM identical={res.get('ram_identical')}")
    else:
        res["detected"] = status == "failed"
        res["channel_named"] = res.get("error_channel") is not None
        res["channel_matches"] = res.get("error_channel") == fired["channel"]
        if not res["detected"]:
            problems.append(f"source status {status}")
        # A reset cuts the source's end too: the source fails at once and
        # closes the main channel, and the destination may hear of that
        # before its multifd thread reads the cut, so its first error can be
        # the main channel's.  Reported, not required.
        if not res["channel_named"] and kind != "reset":
            problems.append(f"destination error names no channel: {res.get('dst_error', '')!r}")
        if res.get("dst_ran"):
            problems.append("destination guest ran")
        if not res.get("src_running"):
            problems.append(f"source not running ({res.get('src_status')})")
    res["ok"] = not problems
    if problems:
        res["error"] = "; ".join(problems)
    return res["ok"]


def unfired_kinds(kinds, results):
    """Failures for the kinds that never fired in a run (each must, once)."""
    return [{"phase": "every-kind-fires", "kind": k, "ok": False,
             "error": f"fault kind {k} never fired in {sum(1 for r in results if r['kind'] == k)} "
                      f"trials: it was not tested"}
            for k in kinds if not any(r["kind"] == k and r.get("injected") for r in results)]


# Kinds whose packets are rarer than --max-trigger allows for: in 10 dedup
# trials a trigger of 90 fired and one of 101 did not (the migration held
# fewer packets with a dedup page), so their trigger is drawn from fewer.
KIND_MAX_TRIGGER = {"dedup": 60}


def one_trial(src, opts, g, workdir, run_id, kind, trial, channels, rng, max_trigger):
    name = f"dst-{kind}-{trial}"
    trigger = rng.randint(1, min(max_trigger, KIND_MAX_TRIGGER.get(kind, max_trigger)))
    seed = rng.randrange(1 << 30)
    res = {"kind": kind, "trial": trial, "trigger": trigger, "seed": seed, "ok": False}
    dst, port = new_destination(opts, g, workdir, run_id, name, channels)
    proxy = faultproxy.FaultProxy(port, faultproxy.Injector(kind, trigger, seed))
    observer = None
    if kind in ("delta", "dedup"):
        # Deltas and dedup references need frames that classify their
        # pages; on a loopback link the adaptive mode sends most batches
        # raw.
        src.qmp.execute("migrate-set-parameters", {"multifd-cbc-mode": "fixed"})
    if kind == "drop-last":
        # Stop the source before its final RAM round; from there on the
        # proxy drops the last data packet before each channel's sync.
        set_capability(src, "pause-before-switchover", True)
        observer = SwitchoverRelease(src, proxy.injector.arm_final)
    try:
        status = M.migrate_and_wait(src, dst, f"tcp:127.0.0.1:{proxy.port}", opts, res, observer)
        res["injected"] = proxy.injector.fired
        res["status"] = status
        dst_st = dst.status() if dst.alive() else {"status": "exited", "running": False}
        res["dst_runstate"] = dst_st.get("status")
        res["dst_ran"] = bool(dst_st.get("running")) or Q.HEARTBEAT in dst.serial()
        src_st = Q.wait_running(src) if status != "completed" else src.status()
        res["src_status"] = src_st.get("status")
        res["src_running"] = bool(src_st.get("running")) and Q.wait_heartbeat(src, opts.cont_timeout)
        m = re.search(r"multifd (\d+)", res.get("dst_error", ""))
        res["error_channel"] = int(m.group(1)) if m else None
        if status == "completed":
            res["verified"] = M.verify_after_success(src, dst, opts, res)
            Q.resume(src)
        judge_trial(res)
    finally:
        proxy.close()
        dst.stop()
        if observer is not None:
            set_capability(src, "pause-before-switchover", False)
        if kind in ("delta", "dedup"):
            mode = M.method_params(opts, "cbc", channels, "src").get("multifd-cbc-mode", "adaptive")
            src.qmp.execute("migrate-set-parameters", {"multifd-cbc-mode": mode})
    inj = res.get("injected") or {}
    verdict = "OK  " if res["ok"] else "FAIL"
    Q.log(f"  {verdict} {kind} #{trial}: trigger={trigger} "
          f"injected={'ch%s pkt%s later=%s' % (inj.get('channel'), inj.get('packet_num'), inj.get('later_data')) if inj else 'no'} "
          f"status={res.get('status')} dst: {res.get('dst_error', '')[:150]!r}"
          f"{' ERROR ' + res['error'] if res.get('error') else ''}")
    return res


def setup_run(args, what):
    """Options, guest, log directory, run id and seeded RNG of one run."""
    opts = harness_opts(args, [])
    kernel, initrd, _ = Q.guest_files(opts)
    g = {"kernel": kernel, "initrd": initrd, "append": M.kernel_append(opts, opts.workloads)}
    return opts, g, make_workdir(args, what), f"{os.getpid()}-{what[0]}", random.Random(args.seed)


def run_inject(args):
    opts, g, workdir, run_id, rng = setup_run(args, "inject")
    kinds = [k for k in args.kinds.split(",") if k]
    results, retries = [], []
    src = boot_source(opts, g, workdir, run_id, args.channels)
    try:
        for kind in kinds:
            Q.log(f"kind {kind}: {args.trials} trials")
            for t in range(1, args.trials + 1):
                results.append(one_trial(src, opts, g, workdir, run_id, kind, t, args.channels,
                                         rng, args.max_trigger))
            r = clean_migration(src, opts, g, workdir, run_id, f"retry-{kind}", args.channels)
            r["kind"] = kind
            Q.log(f"  {'OK ' if r['ok'] else 'FAIL'} clean retry after {kind}: "
                  f"identical={r.get('ram_identical')} {r.get('error', '')}")
            retries.append(r)
    finally:
        src.stop()

    rows = inject_summary(kinds, results, retries)
    print()
    print("| kind | trials | fired | migration failed | decoded to the same pages "
          "| error names a channel | the faulted one | dst guest ran | corrupt RAM resumed "
          "| source running | clean retry |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        failed = r["detected"]
        print(f"| {r['kind']} | {r['trials']} | {r['injected']} | {r['detected']}/{r['injected']} "
              f"| {r['harmless']} | {r['channel_named']}/{failed} "
              f"| {r['channel_matches']}/{failed} | {r['dst_ran']} | {r['corrupt_resumed']} "
              f"| {r['src_running']}/{failed} | {'identical RAM' if r['retry_ok'] else 'FAILED'} |")
    print("\nerrors reported by the destination (first of each kind):")
    for kind in kinds:
        e = next((r.get("dst_error") for r in results if r["kind"] == kind and r.get("injected")
                  and r.get("dst_error")), None)
        print(f"  {kind}: {e}")
    never = unfired_kinds(kinds, results)
    for r in never:
        print(f"  FAILED: {r['error']}")
    return finish(args, results + retries + never,
                  {"summary": rows, "trials": results, "retries": retries, "unfired": never})


def inject_summary(kinds, results, retries):
    """One row per kind: how many trials fired and what became of them."""
    rows = []
    for kind in kinds:
        rs = [r for r in results if r["kind"] == kind]
        inj = [r for r in rs if r.get("injected")]
        failed = [r for r in inj if r.get("detected") is not None]
        rows.append({
            "kind": kind, "trials": len(rs), "injected": len(inj),
            "detected": sum(1 for r in inj if r.get("detected")),
            "harmless": sum(1 for r in inj if r.get("harmless")),
            "channel_named": sum(1 for r in failed if r.get("channel_named")),
            "channel_matches": sum(1 for r in failed if r.get("channel_matches")),
            # Completed with RAM that differs: the harness does not resume
            # such a destination, but QEMU would run it.
            "corrupt_resumed": sum(1 for r in inj if r.get("ram_identical") is False),
            "dst_ran": sum(1 for r in inj if r.get("dst_ran")),
            "src_running": sum(1 for r in failed if r.get("src_running")),
            "retry_ok": sum(1 for r in retries if r["kind"] == kind and r["ok"]),
        })
    return rows


# --------------------------------------------------------------------------
# cancel
# --------------------------------------------------------------------------
def rss_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


# Where a cycle cancels, in turn: what query-migrate must say right before
# the cancel, and what the proxy holds back to keep the migration there.
#   active          iterating, slowed by --cancel-bandwidth; cancelled at a
#                   random fraction of the time a whole migration took at
#                   that bandwidth (measured first)
#   pre-switchover  pause-before-switchover: the source has stopped its
#                   guest before the final RAM round
#   final-sync      released from pre-switchover; the proxy stops delivering
#                   at the first multifd sync packet of the final round, so
#                   the destination waits in that sync
#   final-round     released; the proxy stops delivering at the main
#                   channel's next bytes, so the destination waits for the
#                   final round's RAM, the end of RAM and the device state
# In both of the last two the source sends its final round and its device
# state (holding the BQL, so QMP waits too) and then waits in QEMU's
# "device" state for the destination; that is where the cancel lands.
CANCEL_POINTS = ("active", "pre-switchover", "active", "final-sync", "final-round")
EXPECTED_STATE = {"active": "active", "pre-switchover": "pre-switchover",
                  "final-sync": "device", "final-round": "device"}
PROXY_HOLD = {"final-sync": "sync", "final-round": "main"}
# An active cycle cancels after this fraction of the measured time, drawn at
# random, once the migration is active.
CANCEL_FRACTION = (0.05, 0.75)


def cancel_point(cycle):
    """The cancel point of cycle `cycle` (1-based)."""
    return CANCEL_POINTS[(cycle - 1) % len(CANCEL_POINTS)]


def wait_status(src, wanted, timeout):
    """Polls query-migrate until its status is in `wanted` or final; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        status = src.qmp.execute("query-migrate").get("status")
        if status in wanted or status in ("completed", "failed", "cancelled") \
                or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def cancel_once(src, proxy, point, expected_s, rng, opts):
    """Starts a migration through `proxy`, brings it to `point`, cancels it.

    Returns (delay, status right before the cancel, final status, error)."""
    uri = f"tcp:127.0.0.1:{proxy.port}"
    if point == "active":
        Q.start_migration(src, uri)
        reached = wait_status(src, {"active"}, 30)
        delay = round(rng.uniform(*CANCEL_FRACTION) * expected_s, 3)
    else:
        Q.start_migration(src, uri)
        reached = wait_status(src, {"pre-switchover"}, opts.timeout)
        if reached == "pre-switchover" and point in PROXY_HOLD:
            proxy.hold = PROXY_HOLD[point]
            src.qmp.execute("migrate-continue", {"state": "pre-switchover"})
            reached = wait_status(src, {"device"}, 30)
        delay = round(rng.uniform(0.1, 1.0), 3)
    if reached == EXPECTED_STATE[point]:
        time.sleep(delay)
    before = src.qmp.execute("query-migrate").get("status")
    t = time.monotonic()
    src.qmp.execute("migrate_cancel")
    wait_status(src, set(), 30)
    info = src.qmp.execute("query-migrate")
    Q.log(f"  {point}: {before} -> {info.get('status')} {time.monotonic() - t:.2f}s after the cancel")
    return delay, before, info.get("status"), info.get("error-desc")


def destination_after_cancel(dst, timeout=10):
    """The destination's migration status once it is final after a cancel,
    "no QMP answer" when its main loop is blocked, "exited" when it quit."""
    deadline = time.monotonic() + timeout
    while True:
        if not dst.alive():
            return "exited"
        try:
            status = dst.qmp.execute("query-migrate", timeout=2, stacks=False).get("status")
        except Q.HarnessError:
            return "no QMP answer"
        if status in ("failed", "cancelled", "completed") or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def judge_cycle(cyc):
    """A cancel cycle passes only if it cancelled a running migration at its
    point, the source ran on and the retry gave identical RAM."""
    problems = []
    want = EXPECTED_STATE[cyc["point"]]
    if cyc.get("status_at_cancel") != want:
        problems.append(f"the migration was {cyc.get('status_at_cancel')} when the cancel was "
                        f"issued, not {want}: the cycle did not cancel a running migration")
    if cyc.get("status") not in ("cancelled", "failed"):
        problems.append(f"the cancelled migration ended {cyc.get('status')}")
    if cyc["point"] in PROXY_HOLD and not cyc.get("proxy_held"):
        problems.append(f"the proxy held no {PROXY_HOLD[cyc['point']]} data before the cancel")
    if cyc.get("dst_ran"):
        problems.append("the destination guest ran after the cancel")
    if not cyc.get("src_running"):
        problems.append("source not running after the cancel")
    if not cyc.get("retry_ok"):
        problems.append(f"retry: {cyc.get('retry_error')}")
    cyc["ok"] = not problems
    cyc["error"] = "; ".join(problems) if problems else None
    return cyc["ok"]


def cycles_by_state(cycles):
    """{(point, state at cancel): {"cycles", "cancelled", "failed", "other", "ok"}}"""
    out = {}
    for c in cycles:
        row = out.setdefault((c["point"], c.get("status_at_cancel")),
                             {"cycles": 0, "cancelled": 0, "failed": 0, "other": 0, "ok": 0})
        row["cycles"] += 1
        row[c["status"] if c.get("status") in ("cancelled", "failed") else "other"] += 1
        row["ok"] += bool(c.get("ok"))
    return out


def set_bandwidth(src, bw):
    src.qmp.execute("migrate-set-parameters", {"max-bandwidth": bw})


def run_cancel(args):
    opts, g, workdir, run_id, rng = setup_run(args, "cancel")
    cycles = []
    slow = M.parse_bandwidth(args.cancel_bandwidth)
    src = boot_source(opts, g, workdir, run_id, args.channels)
    try:
        # How long a whole migration takes at the cancel bandwidth.
        set_bandwidth(src, slow)
        cal = clean_migration(src, opts, g, workdir, run_id, "dst-calibrate", args.channels)
        set_bandwidth(src, opts.max_bandwidth)
        expected_s = (cal.get("total_time_ms") or opts.timeout * 1000) / 1000
        Q.log(f"a migration at {args.cancel_bandwidth} took {expected_s:.1f}s "
              f"(status {cal.get('status')}, identical={cal.get('ram_identical')})")
        base = rss_kib(src.proc.pid)
        Q.log(f"source RSS before the first cycle: {base}")
        for c in range(1, args.cycles + 1):
            point = cancel_point(c)
            cyc = {"cycle": c, "point": point, "ok": False}
            dst, port = new_destination(opts, g, workdir, run_id, f"dst-c{c}", args.channels)
            proxy = faultproxy.FaultProxy(port, faultproxy.Injector("none", 0, 0))
            try:
                if point == "active":
                    set_bandwidth(src, slow)
                else:
                    set_capability(src, "pause-before-switchover", True)
                cyc["delay_s"], cyc["status_at_cancel"], cyc["status"], cyc["src_error"] = \
                    cancel_once(src, proxy, point, expected_s, rng, opts)
                cyc["proxy_held"] = proxy.holding.is_set()
                # The hold stood for a slow network, not a lossy one: what the
                # source sent before the cancel arrives, then its end closes.
                proxy.release()
                cyc["dst_after_cancel"] = destination_after_cancel(dst)
                # A cancel in "device" can come after the source sent all:
                # the destination may then complete its load; under -S (as
                # libvirt starts it) its guest must still not run.
                answers = cyc["dst_after_cancel"] not in ("no QMP answer", "exited")
                cyc["dst_ran"] = Q.HEARTBEAT in dst.serial() or \
                    (answers and bool(dst.status().get("running")))
            finally:
                proxy.close()
                dst.stop()
                set_bandwidth(src, opts.max_bandwidth)
                set_capability(src, "pause-before-switchover", False)
            if cyc["status"] == "completed":
                Q.resume(src)
            st = Q.wait_running(src)
            cyc["src_running"] = bool(st.get("running")) and Q.wait_heartbeat(src, opts.cont_timeout)
            r = clean_migration(src, opts, g, workdir, run_id, f"dst-r{c}", args.channels)
            cyc["retry_ok"] = r["ok"]
            cyc["retry_error"] = r.get("error")
            cyc["retry_total_ms"] = r.get("total_time_ms")
            cyc["ram_identical"] = r.get("ram_identical")
            cyc["cbc_frames"] = (r.get("method_stats", {}).get("cbc") or {}).get("frames")
            time.sleep(0.5)
            cyc["rss"] = rss_kib(src.proc.pid)
            judge_cycle(cyc)
            Q.log(f"cycle {c}: {point}: cancel after {cyc['delay_s']}s "
                  f"({cyc['status_at_cancel']} -> {cyc['status']}), "
                  f"source running={cyc['src_running']}, retry identical={cyc['ram_identical']} "
                  f"({cyc['retry_total_ms']} ms), RSS {cyc['rss']['VmRSS']} KiB "
                  f"anon {cyc['rss']['RssAnon']} KiB{' ERROR ' + cyc['error'] if cyc.get('error') else ''}")
            cycles.append(cyc)
    finally:
        src.stop()

    print()
    print("| cycle | cancel point | cancel after s | state at cancel | result | destination "
          "| source running | retry RAM | VmRSS KiB | RssAnon KiB |")
    print("|---:|---|---:|---|---|---|---|---|---:|---:|")
    for c in cycles:
        print(f"| {c['cycle']} | {c['point']} | {c['delay_s']} | {c['status_at_cancel']} "
              f"| {c['status']}{' (' + c['src_error'] + ')' if c.get('src_error') else ''} "
              f"| {c.get('dst_after_cancel')} "
              f"| {c['src_running']} | {'identical' if c['ram_identical'] else 'DIFFERS'} "
              f"| {c['rss']['VmRSS']} | {c['rss']['RssAnon']} |")
    growth = None
    extra = []
    if len(cycles) < MIN_RSS_CYCLES:
        print(f"\nRSS growth not judged: {len(cycles)} cycles are all warm-up "
              f"(it lasts about 10; judged from {MIN_RSS_CYCLES} cycles)")
    else:
        # The first cycles warm up: every migration starts new channel
        # threads, and glibc gives new threads their own malloc arenas
        # until it has 8 per core, so anonymous memory climbs for a few
        # cycles.  After that it moves in occasional steps (a heap or arena
        # growing) with flat stretches between.  A leak is different: it
        # costs the same every cycle.  So the test is on the per-cycle
        # change over the second half of the run: its median must stay
        # small, and so must the total.
        half = cycles[len(cycles) // 2 - 1:]
        deltas = sorted(b["rss"]["RssAnon"] - a["rss"]["RssAnon"] for a, b in zip(half, half[1:]))
        median = deltas[len(deltas) // 2]
        growth = half[-1]["rss"]["RssAnon"] - half[0]["rss"]["RssAnon"]
        warm = half[0]["rss"]["RssAnon"] - cycles[0]["rss"]["RssAnon"]
        print(f"\nRssAnon: +{warm} KiB from cycle 1 to cycle {half[0]['cycle']} (warm-up); "
              f"from cycle {half[0]['cycle']} to {half[-1]['cycle']}: {growth:+d} KiB in all, "
              f"median {median:+d} KiB per cycle (limits: median {RSS_MEDIAN_LIMIT_KIB} KiB, "
              f"total {RSS_GROWTH_LIMIT_KIB} KiB)")
        if median > RSS_MEDIAN_LIMIT_KIB:
            extra.append({"phase": "rss", "ok": False,
                          "error": f"source anonymous RSS grows {median} KiB per cycle (median)"})
        if growth > RSS_GROWTH_LIMIT_KIB:
            extra.append({"phase": "rss", "ok": False,
                          "error": f"source anonymous RSS grew by {growth} KiB in the second half"})
    print(f"\nmeasured migration time at {args.cancel_bandwidth}: {expected_s:.1f}s; "
          f"active cycles cancel after {CANCEL_FRACTION[0]}..{CANCEL_FRACTION[1]} of it")
    print("\n| cancel point | state at cancel | cycles | cancelled | failed | other | passed |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (point, state), row in sorted(cycles_by_state(cycles).items(), key=str):
        print(f"| {point} | {state} | {row['cycles']} | {row['cancelled']} | {row['failed']} "
              f"| {row['other']} | {row['ok']} |")
    return finish(args, [cal] + cycles + extra,
                  {"cycles": cycles, "rss_growth_kib": growth, "rss_before": base,
                   "calibration": cal, "expected_s": expected_s,
                   "by_state": {f"{p}/{st}": row for (p, st), row in cycles_by_state(cycles).items()}})


# --------------------------------------------------------------------------
def make_workdir(args, what):
    d = args.workdir or os.path.join("/tmp/mecom-harness",
                                     time.strftime("%Y%m%d-%H%M%S") + f"-{what}-{os.getpid()}")
    os.makedirs(d, exist_ok=True)
    Q.log(f"logs under {d}")
    return d


def finish(args, results, doc):
    """Writes the JSON, prints the counts; exit status 0 only when nothing
    failed."""
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True, default=str)
    n_ok = sum(1 for r in results if r.get("ok"))
    n_fail = len(results) - n_ok
    print(f"\n{n_ok} passed, {n_fail} failed")
    return 0 if n_fail == 0 and results else 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("inject", "cancel"):
        s = sub.add_parser(name)
        s.add_argument("--qemu", required=True, help="patched qemu-system-x86_64")
        s.add_argument("--guest", default=None, help="guest dir (default: harness/build-guest.sh)")
        s.add_argument("--mem", type=int, default=256, help="guest RAM MiB (default 256)")
        s.add_argument("--workload", default=None,
                       help="guest workload (default memwrite; replay with --image)")
        s.add_argument("--image", default=None, metavar="FILE",
                       help="RAM image of the replay workload (file or corpus name, e.g. compile)")
        s.add_argument("--mix", default=None, help="replay: replace:W,slice:W,words:W")
        s.add_argument("--data", default="int:30,ptr:25,text:25,rand:10,sparse:8,zero:2,dup:10",
                       help="memwrite: its data mix (default: memwrite's own mix plus a "
                            "tenth of pages copied from a pool of 16, for the dedup kind)")
        s.add_argument("--channels", type=int, default=2, help="multifd channels (default 2)")
        s.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="extra migrate-set-parameters member, both sides")
        s.add_argument("--max-bandwidth", default="unlimited", help="source max-bandwidth")
        s.add_argument("--timeout", type=float, default=120, help="per-migration timeout s")
        s.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
        s.add_argument("--workdir", default=None)
        s.add_argument("--json", default=None, help="write the results as JSON")
        if name == "inject":
            s.add_argument("--kinds", default=",".join(faultproxy.KINDS),
                           help="comma list of fault kinds (default: all)")
            s.add_argument("--trials", type=int, default=10, help="trials per kind (default 10)")
            s.add_argument("--max-trigger", type=int, default=120,
                           help="the faulted data packet is drawn from 1..N (default 120)")
        else:
            s.add_argument("--cycles", type=int, default=20, help="cancel/retry cycles (default 20; the RSS check needs at least 20)")
            s.add_argument("--cancel-bandwidth", default="16MB",
                           help="max-bandwidth of the migrations cancelled while active "
                                "(default 16MB = 16e6 bytes/s)")
    args = p.parse_args(argv)
    Q.install_cleanup()
    try:
        return run_inject(args) if args.cmd == "inject" else run_cancel(args)
    finally:
        Q.cleanup_all()


if __name__ == "__main__":
    sys.exit(main())
