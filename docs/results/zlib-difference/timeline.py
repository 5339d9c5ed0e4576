#!/usr/bin/env python3
"""Failing migrations of a bench workdir traced with -trace
migration_bitmap_sync_end -trace vm_state_notify -trace
memory_notdirty_write_access: for each differing page, its tracked writes
(ms relative to the VM stop), the syncs, and whether pages near it (+-16)
had tracked writes after the differing page's last one."""
import calendar, glob, json, os, re, sys, time
wd = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(wd, "results.jsonl"))]
for r in rows:
    rc = r.get("ram_compare") or {}
    if not rc.get("diff_pages"):
        continue
    gdir = os.path.dirname(r["round_dump"]) if r.get("round_dump") else None
    t0 = calendar.timegm(time.strptime(r["started"], "%Y-%m-%d %H:%M:%S"))
    ev = []
    for f in glob.glob(os.path.join(wd, "*", "src.stderr.log")):
        for l in open(f, errors="replace"):
            m = re.match(r"\d+@(\d+\.\d+):(\w+) (.*)", l)
            if m and t0 - 1 <= float(m.group(1)) < t0 + 120:
                ev.append((float(m.group(1)), m.group(2), m.group(3)))
    ev.sort()
    stop = next(e[0] for e in ev if e[1] == "vm_state_notify" and "running 0" in e[2])
    ev = [e for e in ev if e[0] <= stop + 0.01]
    syncs = [round((e[0] - stop) * 1000) for e in ev if e[1] == "migration_bitmap_sync_end"]
    wr = {}
    for e in ev:
        if e[1] == "memory_notdirty_write_access":
            p = int(re.search(r"ram_addr 0x([0-9a-f]+)", e[2]).group(1), 16) >> 12
            wr.setdefault(p, []).append(round((e[0] - stop) * 1000))
    print(f"seq {r['seq']} ({r['started']}): {rc['diff_pages']} pages differ; syncs {syncs}")
    for o in rc["diff_offsets"]:
        p = int(o, 16) >> 12
        last = max(wr.get(p, [-10**9]))
        after = sorted({q for q in range(p - 16, p + 17) if q != p and any(x > last for x in wr.get(q, []))})
        print(f"  {o}: tracked writes {wr.get(p, [])[-5:]}; neighbours (+-16) with tracked writes after it: {len(after)}")
