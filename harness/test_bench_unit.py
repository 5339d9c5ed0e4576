#!/usr/bin/env python3
"""Unit tests for harness/bench.py (no QEMU, no root).

    python3 harness/test_bench_unit.py -v      (all: scripts/qemu-tests.sh's
    python3 -m unittest discover -s harness -p 'test_*.py')
"""
import csv
import os
import tempfile
import unittest

import bench


def row(link, workload, method, rep, total_ms, down, mib, scpu, smig, dcpu,
        converged=1, identical=1, ok=1, syncs=3):
    return {"link": link, "link_Bps": bench.parse_links(link)[0][1], "link_mode": "maxbw",
            "workload": workload, "method": method, "repeat": rep,
            "converged": converged, "ok": ok, "ram_identical": identical if converged else None,
            "total_ms": total_ms, "downtime_ms": down, "mib": mib, "src_cpu_s": scpu,
            "src_mig_cpu_s": smig, "dst_cpu_s": dcpu, "dirty_syncs": syncs,
            "mem_mib": 384, "channels": 2, "timeout_s": 120, "downtime_limit_ms": 300,
            "status": "completed" if converged else "did-not-converge", "error": ""}


class ParseTest(unittest.TestCase):
    def test_links(self):
        self.assertEqual(bench.parse_links("1g,10g"), [("1g", 125_000_000), ("10g", 1_250_000_000)])
        self.assertEqual(bench.parse_links(" 100m "), [("100m", 12_500_000)])
        with self.assertRaises(ValueError):
            bench.parse_links("unlimited")
        with self.assertRaises(ValueError):
            bench.parse_links(",")

    def test_link_label(self):
        self.assertEqual(bench.link_label(125_000_000), "1 Gbit/s")
        self.assertEqual(bench.link_label(1_250_000_000), "10 Gbit/s")
        self.assertEqual(bench.link_label(12_500_000), "100 Mbit/s")

    def test_workloads(self):
        self.assertEqual(bench.workload_spec("idle")["workload"], "idle")
        lo = bench.workload_spec("memwrite-low")
        self.assertEqual((lo["workload"], lo["rate"], lo["data"]), ("memwrite", "8", "random"))
        hi = bench.workload_spec("memwrite-high", high_rate=96)
        self.assertEqual(hi["rate"], "96")
        x = bench.workload_spec("memwrite:mixed:0")
        self.assertEqual((x["rate"], x["data"]), ("0", "mixed"))
        self.assertEqual(bench.workload_spec("memwrite:int:30,text:70:5000p")["data"], "int:30,text:70")
        w = bench.workload_spec("memwrite:random:80000p:word:48")
        self.assertEqual((w["data"], w["rate"], w["dirty"], w["wss"]), ("random", "80000p", "word", 48))
        self.assertEqual(bench.workload_spec("memwrite:random:8:full")["dirty"], "full")
        self.assertIsNone(bench.workload_spec("memwrite:random:8")["dirty"])
        with self.assertRaises(ValueError):
            bench.workload_spec("memwrite:random:8:sideways")
        with self.assertRaises(ValueError):
            bench.workload_spec("bogus")

    def test_methods(self):
        self.assertEqual(bench.METHODS["zlib-1"], ("zlib", {"multifd-zlib-level": 1}))
        self.assertEqual(bench.METHODS["zstd-1"], ("zstd", {"multifd-zstd-level": 1}))
        self.assertEqual(bench.METHODS["cbc-fixed"][1], {"multifd-cbc-mode": "fixed"})
        self.assertEqual(bench.METHODS["cbc-adaptive"][1], {"multifd-cbc-mode": "adaptive"})

    def test_tc(self):
        text = ("qdisc tbf 8001: root refcnt 2 rate 1Gbit burst 500000b lat 10ms\n"
                " Sent 123456789 bytes 4567 pkt (dropped 0, overlimits 12 requeues 0)\n")
        self.assertEqual(bench.parse_tc_sent(text), (123456789, 4567))
        self.assertEqual(bench.parse_tc_sent("nothing"), (None, None))
        a = bench.tbf_args(125_000_000)
        self.assertEqual(a[:3], ["tbf", "rate", "1000000000bit"])
        self.assertEqual(int(a[a.index("burst") + 1]), 500_000)
        small = bench.tbf_args(1_000_000)
        self.assertEqual(int(small[small.index("burst") + 1]), 64 * 1024)

    def test_guest_rate(self):
        log = "memwrite: 100 pages/s (0.4 MiB/s)\nx\nmemwrite: 16380 pages/s (64.0 MiB/s)\n"
        self.assertEqual(bench.last_guest_rate(log), 64.0)
        self.assertIsNone(bench.last_guest_rate(""))


class PlanTest(unittest.TestCase):
    def test_rotation(self):
        self.assertEqual(bench.rotated(["a", "b", "c"], 4), ["b", "c", "a"])

    def test_plan_interleaves(self):
        methods = list(bench.METHODS)
        groups = bench.plan(3, ["idle", "sort"], ["1g", "10g"], methods)
        self.assertEqual(len(groups), 6)
        cells = [(g["repeat"], g["workload"], lk, ms) for g in groups for lk, ms in g["cells"]]
        self.assertEqual(len(cells), 12)
        for _, _, _, ms in cells:
            self.assertEqual(sorted(ms), sorted(methods))
        # every method leads as often as every other (12 cells, 5 methods: 2 or 3 each)
        firsts = [ms[0] for *_, ms in cells]
        self.assertLessEqual(max(map(firsts.count, methods)) - min(map(firsts.count, methods)), 1)
        # link order alternates per repeat
        self.assertEqual([lk for lk, _ in groups[0]["cells"]], ["1g", "10g"])
        self.assertEqual([lk for lk, _ in groups[2]["cells"]], ["10g", "1g"])


class AggregateTest(unittest.TestCase):
    def rows(self):
        rs = []
        # cbc-adaptive beats everything on 1g/memwrite-high
        for rep, (t, d) in enumerate([(10000, 50), (12000, 70), (11000, 60)], 1):
            rs.append(row("1g", "memwrite-high", "cbc-adaptive", rep, t, d, 100, 5, 1.0, 2))
            rs.append(row("1g", "memwrite-high", "none", rep, t * 2, d + 10, 300, 6, 0.5, 1))
            rs.append(row("1g", "memwrite-high", "zstd-1", rep, t * 1.5, d + 5, 110, 7, 3.0, 2))
        # one zstd run did not converge on idle; cbc is slower than none there
        rs.append(row("1g", "idle", "none", 1, 800, 3, 96, 0.4, 0.3, 0.1))
        rs.append(row("1g", "idle", "zstd-1", 1, 500, 14, 41, 0.4, 0.36, 0.2))
        rs.append(row("1g", "idle", "zstd-1", 2, 120000, None, 500, 9, 8, 3, converged=0))
        rs.append(row("1g", "idle", "cbc-adaptive", 1, 1000, 5, 43, 0.4, 0.3, 0.2))
        return rs

    def test_medians(self):
        agg = bench.aggregate(self.rows())
        st = agg[("1g", "memwrite-high", "cbc-adaptive")]
        self.assertEqual(st["n"], 3)
        self.assertEqual(st["conv"], 3)
        self.assertAlmostEqual(st["total_s"], 11.0)
        self.assertEqual(st["total_s_min"], 10.0)
        self.assertEqual(st["total_s_max"], 12.0)
        self.assertEqual(st["downtime_ms"], 60)
        z = agg[("1g", "idle", "zstd-1")]
        self.assertEqual((z["n"], z["conv"]), (2, 1))
        self.assertEqual(z["total_s"], 0.5)  # the non-converged run is left out

    def test_verdict(self):
        self.assertEqual(bench.verdict(1.0, 2.0), "met")
        self.assertEqual(bench.verdict(2.0, 2.0), "met")
        self.assertEqual(bench.verdict(3.0, 2.0), "missed by 50%")
        self.assertEqual(bench.verdict(None, 2.0), "missed (did not converge)")
        self.assertEqual(bench.verdict(1.0, None), "met (no converged peer)")

    def test_cell_verdicts(self):
        agg = bench.aggregate(self.rows())
        v = bench.cell_verdicts(agg, "1g", "memwrite-high")
        self.assertEqual(v["time < none, zstd"], "met")
        self.assertEqual(v["bytes <= zstd"], "met")
        self.assertEqual(v["downtime <= best peer"], "met")
        self.assertEqual(v["src CPU <= zstd/2"], "met")    # 1.0 <= 3.0 / 2
        v = bench.cell_verdicts(agg, "1g", "idle")
        self.assertEqual(v["time < none, zstd"], "missed by 100%")  # 1.0 s vs 0.5 s
        self.assertEqual(v["bytes <= zstd"], "missed by 5%")
        self.assertEqual(v["downtime <= best peer"], "missed by 67%")
        self.assertEqual(v["src CPU <= zstd/2"], "missed by 67%")  # 0.3 vs 0.18
        self.assertIsNone(bench.cell_verdicts(agg, "10g", "idle"))


class OutputTest(unittest.TestCase):
    def test_csv_roundtrip_and_markdown(self):
        rs = AggregateTest().rows()
        rs.append(row("1g", "sort", "none", 1, 900, 3, 96, 0.4, 0.3, 0.1, identical=0, ok=0))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.csv")
            bench.write_csv(path, rs)
            with open(path, newline="") as f:
                header = next(csv.reader(f))
            self.assertEqual(header, bench.CSV_FIELDS)
            back = bench.read_csv(path)
            self.assertEqual(len(back), len(rs))
            md = bench.render_markdown(back, "T")
        self.assertIn("# T", md)
        self.assertIn("## 1g (1 Gbit/s)", md)
        self.assertIn("| memwrite-high | cbc-adaptive | 11.00 | 60 | 100.0 | 5.00 | 1.00 | 2.00 | 3 | 3/3 | ok |", md)
        self.assertIn("| idle | zstd-1 | 0.50 |", md)
        self.assertIn("1/2", md)
        self.assertIn("RAM DIFFERS in 1 run", md)
        self.assertIn("| memwrite-high | met | met | met | met |", md)
        # workloads in the catalogue's order
        self.assertLess(md.index("| idle | none"), md.index("| sort | none"))
        self.assertLess(md.index("| sort | none"), md.index("| memwrite-high | none"))

    def test_row_from_result(self):
        res = {"status": "completed", "ok": True, "total_time_ms": 1234, "downtime_ms": 5,
               "setup_time_ms": 2, "ram": {"transferred": 2 * 2**20, "normal-bytes": 4 * 2**20,
                                           "dirty-sync-count": 4, "multifd-bytes": 2 * 2**20},
               "cpu": {"src": {"threads_s": {"mig/src/send": 0.5, "mig/src/main": 0.25},
                               "process_s": 2.0},
                       "dst": {"threads_s": {}, "process_s": 0.7}},
               "ram_identical": True, "ram_compare": {"diff_pages": 0},
               "method_stats": {"cbc": {"cache-hits": 7, "cache-misses": 3, "cache-overflow": 1,
                                        "pages-delta": 6, "pages-raw": 2, "pages-lz4": 4,
                                        "pages-zstd": 5}}}
        r = bench.row_from_result(res, {"link": "1g", "method": "none"})
        self.assertEqual((r["cache_hits"], r["cache_misses"], r["cache_overflow"],
                          r["pages_delta"], r["pages_raw"]), (7, 3, 1, 6, 2))
        self.assertEqual((r["pages_lz4"], r["pages_zstd"]), (4, 5))
        self.assertEqual((r["converged"], r["ok"], r["mib"], r["ratio"]), (1, 1, 2.0, 2.0))
        self.assertEqual((r["src_cpu_s"], r["src_mig_cpu_s"], r["dst_cpu_s"]), (2.0, 0.75, 0.7))
        self.assertEqual((r["dirty_syncs"], r["ram_identical"], r["link"]), (4, 1, "1g"))
        r = bench.row_from_result({"status": "did-not-converge", "migrate_wall_s": 120.5}, {})
        self.assertEqual((r["converged"], r["total_ms"], r["ram_identical"]), (0, 120500, None))
        self.assertIsNone(r["cache_hits"])

    def test_plots(self):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            self.skipTest("matplotlib not installed")
        with tempfile.TemporaryDirectory() as d:
            files = bench.make_plots(AggregateTest().rows(), os.path.join(d, "m"), "T")
            self.assertEqual(sorted(os.path.basename(f) for f in files),
                             ["m-bytes.png", "m-cpu.png", "m-downtime.png", "m-time.png"])
            for f in files:
                self.assertGreater(os.path.getsize(f), 1000)


if __name__ == "__main__":
    unittest.main()
