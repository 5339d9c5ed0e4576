#!/usr/bin/env python3
"""Round dumps: the pages a live migration re-sends in each dirty-sync round,
each with the version sent before it (format: docs/ROUNDS.md).

    rounds.py summary FILE [FILE...]     per round: re-sent pages, their
                                         share of RAM, median/p90 bytes that
                                         differ from the previous version

The recorder (RoundRecorder, used by `migrate.py --round-dump FILE`) copies
the source's RAM file at every dirty sync it sees in `query-migrate`
(`ram.dirty-sync-count`) and writes the pages that changed since the
previous copy, old and new.  Standard library only; a FILE ending in `.zst`
is written and read through the `zstd` command.
"""

import os
import shutil
import struct
import subprocess
import sys
import time

PAGE = 4096
MAGIC = b"MECOMRDS"
VERSION = 1
FILE_HDR = struct.Struct("<8sIIQQ")          # magic, version, page size, RAM pages, unix time
ROUND_HDR = struct.Struct("<4sIIIIIQQQ")     # tag, round, sync from, sync to, flags, 0,
#                                              pages, µs since migrate, 0
TAG_ROUND = b"RND\0"
TAG_END = b"END\0"
FLAG_FINAL = 1                               # the stop-and-copy round (exact)
INDEX = struct.Struct("<Q")


def iter_diff_pages(a, b, page=PAGE, chunk=16 << 20):
    """(page index, page of a, page of b) for every page that differs
    between files a and b (a page past the end of the shorter file is b'' on
    that side), in ascending order; compares chunk-wise first."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        base = 0
        while True:
            ca, cb = fa.read(chunk), fb.read(chunk)
            if not ca and not cb:
                return
            if ca != cb:
                for i in range(0, max(len(ca), len(cb)), page):
                    pa, pb = ca[i:i + page], cb[i:i + page]
                    if pa != pb:
                        yield (base + i) // page, pa, pb
            base += max(len(ca), len(cb))


def differing_bytes(a, b):
    """How many byte positions differ between two equal-length pages."""
    x = int.from_bytes(a, "little") ^ int.from_bytes(b, "little")
    return len(a) - x.to_bytes(len(a), "little").count(0)


def percentile(values, q):
    """Nearest-rank q-quantile (0 < q <= 1) of a non-empty list."""
    s = sorted(values)
    k = max(1, -(-len(s) * q // 1))  # ceil(n q), at least 1
    return s[int(k) - 1]


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
def _open_out(path):
    if path.endswith(".zst"):
        proc = subprocess.Popen(["zstd", "-q", "-3", "-f", "-o", path], stdin=subprocess.PIPE)
        return proc.stdin, proc
    return open(path, "wb"), None


class Writer:
    def __init__(self, path, ram_pages, page=PAGE):
        self.path = path
        self.page = page
        self.f, self.proc = _open_out(path)
        self.f.write(FILE_HDR.pack(MAGIC, VERSION, page, ram_pages, int(time.time())))
        self.rounds = 0

    def round(self, rnd, sync_from, sync_to, pages, t_us=0, flags=0):
        """pages: list of (index, old, new), ascending index."""
        self.f.write(ROUND_HDR.pack(TAG_ROUND, rnd, sync_from, sync_to, flags, 0,
                                    len(pages), t_us, 0))
        for idx, old, new in pages:
            if len(old) != self.page or len(new) != self.page:
                raise ValueError(f"page {idx}: not {self.page} bytes")
            self.f.write(INDEX.pack(idx))
            self.f.write(old)
            self.f.write(new)
        self.rounds += 1

    def close(self):
        self.f.write(ROUND_HDR.pack(TAG_END, self.rounds, 0, 0, 0, 0, 0, 0, 0))
        self.f.close()
        if self.proc is not None and self.proc.wait() != 0:
            raise OSError(f"zstd failed writing {self.path}")


class RoundRecorder:
    """Observer of one migration (migrate.migrate_and_wait calls poll(info)
    after every query-migrate and finish(status) at the end): snapshots the
    source's RAM file `ram` at each new dirty-sync-count and writes, per
    round, the pages that changed since the previous snapshot.  Snapshots go
    next to the RAM file (/dev/shm); `track` registers them for clean-up."""

    def __init__(self, ram, out, track=None):
        self.ram = ram
        self.out = out
        self.snaps = [f"{ram}.snap-a", f"{ram}.snap-b"]
        for s in self.snaps:
            if track is not None:
                track(s)
        self.cur = 0
        self.sync = None
        self.t0 = time.monotonic()
        self.writer = Writer(out, os.path.getsize(ram) // PAGE)
        self.log = []          # per round: (round, sync_from, sync_to, pages, flags)

    def _snapshot(self):
        self.cur ^= 1
        shutil.copyfile(self.ram, self.snaps[self.cur])
        return self.snaps[self.cur ^ 1], self.snaps[self.cur]

    def _round(self, sync_to, flags=0):
        t_us = int((time.monotonic() - self.t0) * 1e6)
        prev, cur = self._snapshot()
        pages = list(iter_diff_pages(prev, cur))
        self.writer.round(sync_to, self.sync, sync_to, pages, t_us, flags)
        self.log.append((sync_to, self.sync, sync_to, len(pages), flags))
        self.sync = sync_to

    def poll(self, info):
        n = (info.get("ram") or {}).get("dirty-sync-count")
        if not n:
            return
        if self.sync is None:
            self._snapshot()                    # the version of round 1
            self.sync = n
            self.t0 = time.monotonic()
        elif n > self.sync:
            self._round(n)

    def finish(self, status, final_sync=None):
        """After the migration: on `completed` the source is stopped, so its
        RAM is exactly the last version sent (the FINAL round)."""
        try:
            if status == "completed" and self.sync is not None:
                self._round(max(final_sync or 0, self.sync), FLAG_FINAL)
            self.writer.close()
        finally:
            for s in self.snaps:
                try:
                    os.unlink(s)
                except FileNotFoundError:
                    pass


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------
def _read_exact(f, n):
    b = f.read(n)
    if len(b) != n:
        raise EOFError(f"truncated round dump (wanted {n} bytes, got {len(b)})")
    return b


def read_rounds(path):
    """Yields (header dict, round dict with 'pages' = [(index, old, new)])
    for every round of a dump; the header is the same object each time."""
    if path.endswith(".zst"):
        proc = subprocess.Popen(["zstd", "-q", "-dc", path], stdout=subprocess.PIPE)
        f = proc.stdout
    else:
        proc, f = None, open(path, "rb")
    try:
        magic, version, page, ram_pages, created = FILE_HDR.unpack(_read_exact(f, FILE_HDR.size))
        if magic != MAGIC or version != VERSION:
            raise ValueError(f"{path}: not a version-{VERSION} round dump")
        hdr = {"page_size": page, "ram_pages": ram_pages, "created": created}
        while True:
            tag, rnd, s0, s1, flags, _, n, t_us, _ = ROUND_HDR.unpack(_read_exact(f, ROUND_HDR.size))
            if tag == TAG_END:
                return
            if tag != TAG_ROUND:
                raise ValueError(f"{path}: bad round tag {tag!r}")
            pages = []
            for _ in range(n):
                (idx,) = INDEX.unpack(_read_exact(f, INDEX.size))
                pages.append((idx, _read_exact(f, page), _read_exact(f, page)))
            yield hdr, {"round": rnd, "sync_from": s0, "sync_to": s1, "flags": flags,
                        "t_s": t_us / 1e6, "pages": pages}
    finally:
        f.close()
        if proc is not None:
            proc.wait()


def summarize(path):
    """Per round: pages re-sent, their fraction of RAM, and the median, p90
    and mean number of bytes that differ from the previous version."""
    out = []
    for hdr, r in read_rounds(path):
        diffs = [differing_bytes(old, new) for _, old, new in r["pages"]]
        out.append({
            "round": r["round"], "sync_from": r["sync_from"], "sync_to": r["sync_to"],
            "final": bool(r["flags"] & FLAG_FINAL), "t_s": r["t_s"], "pages": len(diffs),
            "frac": len(diffs) / hdr["ram_pages"] if hdr["ram_pages"] else 0.0,
            "median": percentile(diffs, 0.5) if diffs else None,
            "p90": percentile(diffs, 0.9) if diffs else None,
            "mean": sum(diffs) / len(diffs) if diffs else None,
            "ram_pages": hdr["ram_pages"],
        })
    return out


def format_summary(rows, name=""):
    lines = [f"{name}: {rows[0]['ram_pages'] if rows else '?'} RAM pages, {len(rows)} rounds after the first"
             if name else None]
    lines.append(f"{'round':>5}  {'syncs':>7}  {'t s':>6}  {'changed pg':>10}  {'% of RAM':>8}  "
                 f"{'median B':>8}  {'p90 B':>6}  {'mean B':>7}")
    fmt = lambda v, nd=0: "-" if v is None else f"{v:.{nd}f}"  # noqa: E731
    for r in rows:
        lines.append(f"{str(r['round']) + ('F' if r['final'] else ''):>5}  "
                     f"{str(r['sync_from']) + '-' + str(r['sync_to']):>7}  {r['t_s']:6.2f}  "
                     f"{r['pages']:10d}  {100 * r['frac']:8.2f}  {fmt(r['median']):>8}  "
                     f"{fmt(r['p90']):>6}  {fmt(r['mean'], 0):>7}")
    lines.append("(bytes differing from the version of the page in the previous snapshot, "
                 "of 4096; F = the stop-and-copy round)")
    return "\n".join(ln for ln in lines if ln is not None)


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="Summarise round dumps (docs/ROUNDS.md).")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="per-round re-sent pages and bytes changed")
    s.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    for i, f in enumerate(args.files):
        if i:
            print()
        print(format_summary(summarize(f), f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
