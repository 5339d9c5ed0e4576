#!/usr/bin/env python3
"""Unit tests (no QEMU) of the replay workload's host side: the change-mix
parser, images, the round dumps (diff, format, recorder, summary) and the
demo's verdict lines."""

import os
import random
import tempfile
import unittest

import bench
import migrate
import qemu
import rounds

PAGE = rounds.PAGE


def page(seed):
    return random.Random(seed).randbytes(PAGE)


class MixTest(unittest.TestCase):
    def test_normalises_order_and_missing(self):
        self.assertEqual(qemu.parse_mix("words:5,replace:1"), "replace:1,slice:0,words:5")
        self.assertEqual(qemu.parse_mix(" slice:3 "), "replace:0,slice:3,words:0")

    def test_rejects(self):
        for bad in ("", "replace:0,words:0", "copy:3", "replace", "replace:-1",
                    "replace:x", "replace:1,replace:2", "slice:1.5"):
            with self.assertRaises(ValueError, msg=bad):
                qemu.parse_mix(bad)

    def test_kernel_cmdline_only_for_replay(self):
        opts = migrate.parse_opts(["--qemu", "/bin/true", "--mix", "words:1"])
        self.assertIn("mecom.mix=replace:0,slice:0,words:1", migrate.kernel_append(opts, "replay"))
        self.assertNotIn("mecom.mix", migrate.kernel_append(opts, "memwrite"))


class ImageTest(unittest.TestCase):
    def test_raw_is_used_as_is_and_odd_size_is_padded(self):
        with tempfile.TemporaryDirectory() as d:
            os.environ["MECOM_CACHE"] = d
            try:
                ok = os.path.join(d, "a.raw")
                with open(ok, "wb") as f:
                    f.write(bytes(2 * PAGE))
                self.assertEqual(qemu.raw_image(ok), ok)
                odd = os.path.join(d, "b.bin")
                with open(odd, "wb") as f:
                    f.write(b"x" * (PAGE + 10))
                out = qemu.raw_image(odd)
                self.assertNotEqual(out, odd)
                self.assertEqual(os.path.getsize(out), 2 * PAGE)
            finally:
                del os.environ["MECOM_CACHE"]

    def test_drive_is_read_only_virtio(self):
        args = " ".join(qemu.image_args("/x.raw"))
        self.assertIn("readonly=on", args)
        self.assertIn("virtio-blk-pci", args)

    def test_bench_workload_spec(self):
        self.assertEqual(bench.workload_spec("replay:compile")["image"], "compile")
        self.assertEqual(bench.workload_spec("replay:compile")["workload"], "replay")
        self.assertEqual(bench.workload_spec("replay", image="/i.raw")["image"], "/i.raw")
        with self.assertRaises(ValueError):
            bench.workload_spec("replay")
        self.assertIsNone(bench.workload_spec("idle")["image"])

    def test_dump_path_per_run(self):
        self.assertEqual(migrate.round_dump_path("/t/x.rd.zst", "replay", "cbc", 2, 1, False),
                         "/t/x.rd.zst")
        self.assertEqual(migrate.round_dump_path("/t/x.rd.zst", "replay", "cbc", 2, 3, True),
                         "/t/x-replay-cbc-2ch-r3.rd.zst")


class DiffTest(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.TemporaryDirectory()
        self.a = os.path.join(self.d.name, "a")
        self.b = os.path.join(self.d.name, "b")

    def tearDown(self):
        self.d.cleanup()

    def write(self, path, pages):
        with open(path, "wb") as f:
            for p in pages:
                f.write(p)

    def test_finds_exactly_the_changed_pages(self):
        old = [page(i) for i in range(40)]
        new = list(old)
        new[0] = page(100)
        new[17] = old[17][:5] + b"\xff" + old[17][6:]
        new[39] = page(101)
        self.write(self.a, old)
        self.write(self.b, new)
        got = list(rounds.iter_diff_pages(self.a, self.b, chunk=8 * PAGE))
        self.assertEqual([i for i, _, _ in got], [0, 17, 39])
        self.assertEqual(got[1][1], old[17])
        self.assertEqual(got[1][2], new[17])

    def test_compare_ram_uses_it(self):
        self.write(self.a, [page(1), page(2)])
        self.write(self.b, [page(1), page(3)])
        r = migrate.compare_ram(self.a, self.b)
        self.assertFalse(r["identical"])
        self.assertEqual(r["diff_pages"], 1)
        self.assertEqual(r["first_diff_offset"], PAGE)

    def test_differing_bytes(self):
        a = page(7)
        b = bytearray(a)
        for i in (0, 1, 100, 4095):
            b[i] ^= 0x01
        self.assertEqual(rounds.differing_bytes(a, bytes(b)), 4)
        self.assertEqual(rounds.differing_bytes(a, a), 0)
        self.assertEqual(rounds.differing_bytes(bytes(PAGE), b"\xff" * PAGE), PAGE)

    def test_percentile(self):
        self.assertEqual(rounds.percentile([5, 1, 3], 0.5), 3)
        self.assertEqual(rounds.percentile(list(range(1, 11)), 0.9), 9)
        self.assertEqual(rounds.percentile([4], 0.9), 4)


class FakeRam:
    """A RAM file whose pages the test changes between polls."""

    def __init__(self, path, n):
        self.path = path
        self.pages = [page(1000 + i) for i in range(n)]
        self.flush()

    def flush(self):
        with open(self.path, "wb") as f:
            f.write(b"".join(self.pages))


class RecorderTest(unittest.TestCase):
    def run_recorder(self, out):
        with tempfile.TemporaryDirectory() as d:
            ram = FakeRam(os.path.join(d, "ram"), 16)
            v1 = list(ram.pages)
            rec = rounds.RoundRecorder(ram.path, out)
            rec.poll({"ram": {"dirty-sync-count": 1}})      # round 1's version
            ram.pages[3] = page(1)
            ram.pages[9] = v1[9][:100] + bytes(28) + v1[9][128:]
            ram.flush()
            rec.poll({"ram": {"dirty-sync-count": 1}})      # same sync: nothing
            rec.poll({"ram": {"dirty-sync-count": 2}})
            v2 = list(ram.pages)
            ram.pages[3] = page(2)
            ram.flush()
            rec.poll({"ram": {"dirty-sync-count": 4}})      # a sync missed
            rec.finish("completed", 4)                      # nothing changed since
            left = os.listdir(d)
        self.assertEqual(sorted(left), ["ram"])           # snapshots removed
        return v1, v2

    def check(self, out):
        v1, v2 = self.run_recorder(out)
        got = list(rounds.read_rounds(out))
        hdr = got[0][0]
        self.assertEqual(hdr["ram_pages"], 16)
        rs = [r for _, r in got]
        self.assertEqual([(r["round"], r["sync_from"], r["sync_to"], r["flags"]) for r in rs],
                         [(2, 1, 2, 0), (4, 2, 4, 0), (4, 4, 4, rounds.FLAG_FINAL)])
        self.assertEqual([p[0] for p in rs[0]["pages"]], [3, 9])
        self.assertEqual(rs[0]["pages"][0][1], v1[3])       # old = previous version
        self.assertEqual(rs[0]["pages"][0][2], v2[3])
        self.assertEqual([(p[0], p[1]) for p in rs[1]["pages"]], [(3, v2[3])])
        self.assertEqual(rs[2]["pages"], [])
        summ = rounds.summarize(out)
        self.assertEqual(summ[0]["pages"], 2)
        self.assertAlmostEqual(summ[0]["frac"], 2 / 16)
        nine = rounds.differing_bytes(v1[9], v2[9])
        self.assertEqual(summ[0]["median"], min(nine, rounds.differing_bytes(v1[3], v2[3])))
        self.assertTrue(summ[2]["final"])
        self.assertIn("changed pg", rounds.format_summary(summ, "x"))

    def test_plain(self):
        with tempfile.TemporaryDirectory() as d:
            self.check(os.path.join(d, "r.rd"))

    @unittest.skipUnless(os.path.exists("/usr/bin/zstd"), "no zstd")
    def test_zstd(self):
        with tempfile.TemporaryDirectory() as d:
            self.check(os.path.join(d, "r.rd.zst"))

    def test_layout_is_little_endian_fixed(self):
        self.assertEqual(rounds.FILE_HDR.size, 32)
        self.assertEqual(rounds.ROUND_HDR.size, 48)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.rd")
            w = rounds.Writer(path, 258)
            w.round(2, 1, 2, [(0x0102, bytes(PAGE), b"\x01" * PAGE)], t_us=7)
            w.close()
            with open(path, "rb") as f:
                b = f.read()
        self.assertEqual(b[:8], b"MECOMRDS")
        self.assertEqual(b[8:12], (1).to_bytes(4, "little"))
        self.assertEqual(b[16:24], (258).to_bytes(8, "little"))
        r = b[32:80]
        self.assertEqual(r[:4], b"RND\0")
        self.assertEqual(r[24:32], (1).to_bytes(8, "little"))          # pages
        self.assertEqual(b[80:88], (0x0102).to_bytes(8, "little"))     # page index
        self.assertEqual(len(b), 32 + 48 + 8 + 2 * PAGE + 48)
        self.assertEqual(b[-48:-44], b"END\0")

    def test_truncated_file_is_an_error(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.rd")
            w = rounds.Writer(path, 4)
            w.round(2, 1, 2, [(1, bytes(PAGE), bytes(PAGE))])
            w.close()
            with open(path, "r+b") as f:
                f.truncate(32 + 48 + 100)
            with self.assertRaises(EOFError):
                list(rounds.read_rounds(path))


def row(method, total, mib, cpu, rep, converged=1, link="1g", w="replay:compile"):
    return {"link": link, "link_Bps": 125000000, "workload": w, "method": method,
            "repeat": rep, "converged": converged, "ok": 1, "ram_identical": 1,
            "total_ms": total, "mib": mib, "src_mig_cpu_s": cpu, "src_cpu_s": cpu,
            "dst_cpu_s": cpu, "downtime_ms": 100, "dirty_syncs": 3}


class VerdictTest(unittest.TestCase):
    def lines(self, rows):
        return {ln.split("] ", 1)[1].split(":", 1)[0]: ln for ln in bench.verdict_lines(rows)}

    def test_picks_the_lowest_median_with_spread(self):
        rows = []
        for rep, (n, z, c) in enumerate([(3000, 5000, 4000), (3100, 5200, 2000),
                                         (2900, 5100, 2100)], 1):
            rows += [row("none", n, 300, 0.5, rep), row("zstd-1", z, 100, 2.0, rep),
                     row("cbc-adaptive", c, 200, 1.0, rep)]
        v = self.lines(rows)
        fast = v["fastest (total migration time)"]
        self.assertIn(": cbc-adaptive.", fast)
        self.assertIn("cbc-adaptive 2.10 (2.00–4.00)", fast)
        self.assertIn("none 3.00 (2.90–3.10)", fast)
        self.assertIn("ranges overlap with none", fast)           # cbc's max 4.0 > none's min
        self.assertIn(": zstd-1.", v["smallest (MiB sent)"])
        self.assertIn("ranges do not overlap", v["smallest (MiB sent)"])
        self.assertIn(": none.", v["cheapest in source CPU (migration threads)"])
        self.assertIn("3 runs per method", fast)

    def test_method_that_never_converged_cannot_win(self):
        rows = [row("none", 9000, 300, 0.5, 1), row("cbc-adaptive", 1, 1, 0.1, 1, converged=0)]
        v = self.lines(rows)
        self.assertIn(": none.", v["fastest (total migration time)"])
        self.assertIn("converged only cbc-adaptive 0/1", v["fastest (total migration time)"])


if __name__ == "__main__":
    unittest.main()
