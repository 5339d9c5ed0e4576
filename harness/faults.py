#!/usr/bin/env python3
"""Hostile-stream and lifecycle tests of cbc live migration (docs/SECURITY.md).

  faults.py inject --qemu Q [--kinds flip,...] [--trials N]
      One source QEMU runs the test guest.  For each fault kind, N trials:
      a fresh destination, the source migrating through harness/faultproxy.py,
      which breaks one cbc packet (bit flip, truncation, connection reset,
      duplicate, reorder, random payload, replayed frame, changed length).
      Every trial in which the fault was injected must end with: the
      migration failed; the destination's error names a multifd channel
      (except after a reset, where the race is reported); the destination guest
      never ran; the source guest still running (its heartbeat advancing).
      After the trials of a kind, a clean migration of the same source to a
      fresh destination must complete with identical RAM, after which both
      guests are resumed and the next kind starts.

  faults.py cancel --qemu Q [--cycles N]
      One source QEMU; each cycle: migrate, migrate_cancel after a random
      delay, check the source runs; then migrate to a fresh destination and
      compare the whole RAM; resume the source.  Records the source's RSS
      after every cycle and fails if its anonymous memory grows.

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
def one_trial(src, opts, g, workdir, run_id, kind, trial, channels, rng, max_trigger):
    name = f"dst-{kind}-{trial}"
    trigger = rng.randint(1, max_trigger)
    seed = rng.randrange(1 << 30)
    res = {"kind": kind, "trial": trial, "trigger": trigger, "seed": seed, "ok": False}
    dst, port = new_destination(opts, g, workdir, run_id, name, channels)
    proxy = faultproxy.FaultProxy(port, faultproxy.Injector(kind, trigger, seed))
    try:
        status = M.migrate_and_wait(src, dst, f"tcp:127.0.0.1:{proxy.port}", opts, res)
        fired = proxy.injector.fired
        res["injected"] = fired
        res["status"] = status
        dst_st = dst.status() if dst.alive() else {"status": "exited", "running": False}
        res["dst_runstate"] = dst_st.get("status")
        res["dst_ran"] = bool(dst_st.get("running")) or Q.HEARTBEAT in dst.serial()
        src_st = Q.wait_running(src)
        res["src_running"] = bool(src_st.get("running")) and Q.wait_heartbeat(src, opts.cont_timeout)
        err = res.get("dst_error", "")
        m = re.search(r"multifd (\d+)", err)
        res["error_channel"] = int(m.group(1)) if m else None
        if fired is None:
            # The migration ended before the trigger packet: nothing to detect.
            res["ok"] = status == "completed" and M.verify_after_success(src, dst, opts, res)
            if status == "completed":
                Q.resume(src)
        elif status == "completed":
            # The broken frame was accepted.  That is only acceptable when it
            # decoded to exactly the pages that were sent (an LZ match can
            # point at either of two equal runs, so some bits of a frame do
            # not change what it decodes to): the whole-RAM comparison says.
            identical = M.verify_after_success(src, dst, opts, res)
            res["harmless"] = bool(identical and res.get("ram_identical"))
            res["ok"] = res["harmless"]
            if not res["ok"]:
                res["error"] = f"fault not detected; RAM identical={res.get('ram_identical')}"
            Q.resume(src)
        else:
            res["detected"] = status == "failed"
            res["channel_named"] = res["error_channel"] is not None
            res["channel_matches"] = res["error_channel"] == fired["channel"]
            problems = []
            if not res["detected"]:
                problems.append(f"source status {status}")
            # A reset cuts the source's end too: the source fails at once and
            # closes the main channel, and the destination may hear of that
            # before its multifd thread reads the cut, so its first error
            # can be the main channel's.  Reported, not required.
            if not res["channel_named"] and kind != "reset":
                problems.append(f"destination error names no channel: {err!r}")
            if res["dst_ran"]:
                problems.append("destination guest ran")
            if not res["src_running"]:
                problems.append(f"source not running ({src_st.get('status')})")
            res["ok"] = not problems
            if problems:
                res["error"] = "; ".join(problems)
    finally:
        proxy.close()
        dst.stop()
    inj = res.get("injected") or {}
    Q.log(f"  {'OK ' if res['ok'] else 'FAIL'} {kind} #{trial}: trigger={trigger} "
          f"injected={'ch%s pkt%s' % (inj.get('channel'), inj.get('packet_num')) if inj else 'no'} "
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

    rows = []
    for kind in kinds:
        rs = [r for r in results if r["kind"] == kind]
        inj = [r for r in rs if r.get("injected")]
        rows.append({
            "kind": kind, "trials": len(rs), "injected": len(inj),
            "detected": sum(1 for r in inj if r.get("detected")),
            "harmless": sum(1 for r in inj if r.get("harmless")),
            "channel_named": sum(1 for r in inj if r.get("channel_named")),
            "channel_matches": sum(1 for r in inj if r.get("channel_matches")),
            "corrupt_resumed": sum(1 for r in inj if r.get("ram_identical") is False),
            "dst_ran": sum(1 for r in inj if r.get("dst_ran")),
            "src_running": sum(1 for r in inj if r.get("src_running")),
            "retry_ok": sum(1 for r in retries if r["kind"] == kind and r["ok"]),
        })
    print()
    print("| kind | trials | injected | migration failed | decoded to the same pages "
          "| error names a channel | the faulted one | dst guest ran | corrupt RAM resumed "
          "| source running | clean retry |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        failed = r["injected"] - r["harmless"]
        print(f"| {r['kind']} | {r['trials']} | {r['injected']} | {r['detected']}/{r['injected']} "
              f"| {r['harmless']} | {r['channel_named']}/{failed} | {r['channel_matches']}/{failed} "
              f"| {r['dst_ran']} | {r['corrupt_resumed']} | {r['src_running']}/{failed} "
              f"| {'identical RAM' if r['retry_ok'] else 'FAILED'} |")
    print("\nerrors reported by the destination (first of each kind):")
    for kind in kinds:
        e = next((r.get("dst_error") for r in results if r["kind"] == kind and r.get("injected")
                  and r.get("dst_error")), None)
        print(f"  {kind}: {e}")
    everything = results + retries
    return finish(args, everything, {"summary": rows, "trials": results, "retries": retries})


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


def cancel_once(src, dst, port, delay, opts):
    """migrate, wait `delay` s, migrate_cancel; returns the final status."""
    Q.start_migration(src, f"tcp:127.0.0.1:{port}")
    time.sleep(delay)
    before = src.qmp.execute("query-migrate").get("status")
    src.qmp.execute("migrate_cancel")
    status, info = before, {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = src.qmp.execute("query-migrate")
        status = info.get("status")
        if status in ("cancelled", "failed", "completed"):
            break
        time.sleep(0.05)
    return before, status, info.get("error-desc")


def run_cancel(args):
    opts, g, workdir, run_id, rng = setup_run(args, "cancel")
    cycles = []
    src = boot_source(opts, g, workdir, run_id, args.channels)
    try:
        base = rss_kib(src.proc.pid)
        Q.log(f"source RSS before the first cycle: {base}")
        for c in range(1, args.cycles + 1):
            delay = round(rng.uniform(0, args.max_delay), 3)
            cyc = {"cycle": c, "delay_s": delay, "ok": False}
            dst, port = new_destination(opts, g, workdir, run_id, f"dst-c{c}", args.channels)
            try:
                cyc["status_at_cancel"], cyc["status"], cyc["src_error"] = \
                    cancel_once(src, dst, port, delay, opts)
            finally:
                dst.stop()
            if cyc["status"] == "completed":
                # Too late to cancel: the source stopped; resume it and go on.
                Q.resume(src)
            st = Q.wait_running(src)
            cyc["src_running"] = bool(st.get("running")) and Q.wait_heartbeat(src, opts.cont_timeout)
            r = clean_migration(src, opts, g, workdir, run_id, f"dst-r{c}", args.channels)
            cyc["retry_ok"] = r["ok"]
            cyc["retry_total_ms"] = r.get("total_time_ms")
            cyc["ram_identical"] = r.get("ram_identical")
            cyc["cbc_frames"] = (r.get("method_stats", {}).get("cbc") or {}).get("frames")
            time.sleep(0.5)
            cyc["rss"] = rss_kib(src.proc.pid)
            # A cancel that lands in the switchover can end "failed" (with an
            # error) rather than "cancelled"; what matters is that the source
            # runs on and the next migration is whole.
            cyc["ok"] = cyc["src_running"] and r["ok"] and \
                cyc["status"] in ("cancelled", "completed", "failed")
            if not cyc["ok"]:
                cyc["error"] = r.get("error") or f"cancel ended {cyc['status']}, source running={cyc['src_running']}"
            Q.log(f"cycle {c}: cancel after {delay}s ({cyc['status_at_cancel']} -> {cyc['status']}), "
                  f"source running={cyc['src_running']}, retry identical={cyc['ram_identical']} "
                  f"({cyc['retry_total_ms']} ms), RSS {cyc['rss']['VmRSS']} KiB "
                  f"anon {cyc['rss']['RssAnon']} KiB{' ERROR ' + cyc['error'] if cyc.get('error') else ''}")
            cycles.append(cyc)
    finally:
        src.stop()

    print()
    print("| cycle | cancel after s | state at cancel | result | source running | retry RAM "
          "| VmRSS KiB | RssAnon KiB |")
    print("|---:|---:|---|---|---|---|---:|---:|")
    for c in cycles:
        print(f"| {c['cycle']} | {c['delay_s']} | {c['status_at_cancel']} "
              f"| {c['status']}{' (' + c['src_error'] + ')' if c.get('src_error') else ''} "
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
    cancelled = sum(1 for c in cycles if c["status"] == "cancelled")
    print(f"cancelled {cancelled} of {len(cycles)} migrations "
          f"(the rest completed before the cancel arrived)")
    return finish(args, cycles + extra, {"cycles": cycles, "rss_growth_kib": growth,
                                         "rss_before": base})


# --------------------------------------------------------------------------
def make_workdir(args, what):
    d = args.workdir or os.path.join("/tmp/mecom-harness",
                                     time.strftime("%Y%m%d-%H%M%S") + f"-{what}-{os.getpid()}")
    os.makedirs(d, exist_ok=True)
    Q.log(f"logs under {d}")
    return d


def finish(args, results, doc):
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
            s.add_argument("--max-delay", type=float, default=1.5,
                           help="cancel after a delay drawn from 0..S seconds (default 1.5)")
    args = p.parse_args(argv)
    Q.install_cleanup()
    try:
        return run_inject(args) if args.cmd == "inject" else run_cancel(args)
    finally:
        Q.cleanup_all()


if __name__ == "__main__":
    sys.exit(main())
