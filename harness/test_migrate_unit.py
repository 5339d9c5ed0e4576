#!/usr/bin/env python3
"""Unit tests for harness/migrate.py helpers (no QEMU needed).

    python3 harness/test_migrate_unit.py -v    (all: scripts/qemu-tests.sh's
    python3 -m unittest discover -s harness -p 'test_*.py')
"""
import argparse
import os
import tempfile
import unittest

import migrate


class BandwidthTest(unittest.TestCase):
    def test_units(self):
        pb = migrate.parse_bandwidth
        self.assertEqual(pb("unlimited"), 0)
        self.assertEqual(pb("0"), 0)
        self.assertEqual(pb("125000000"), 125000000)
        self.assertEqual(pb("1g"), 125_000_000)        # 1 Gbit/s
        self.assertEqual(pb("10g"), 1_250_000_000)
        self.assertEqual(pb("500m"), 62_500_000)
        self.assertEqual(pb("1Gb"), 125_000_000)
        self.assertEqual(pb("1gbit"), 125_000_000)
        self.assertEqual(pb("100MB"), 100_000_000)     # bytes
        self.assertEqual(pb("1GiB"), 1 << 30)


class ValueTest(unittest.TestCase):
    def test_kv(self):
        kv = migrate.parse_kv_list(["multifd-cbc-mode=fixed", "multifd-cbc-zstd-level=3",
                                    "x=on", "y=false"])
        self.assertEqual(kv, {"multifd-cbc-mode": "fixed", "multifd-cbc-zstd-level": 3,
                              "x": True, "y": False})


class KernelCmdlineTest(unittest.TestCase):
    def test_append(self):
        opts = migrate.build_parser().parse_args(["--wss", "64", "--rate", "8p", "--append", "mecom.hb=1"])
        self.assertEqual(migrate.kernel_append(opts, "memwrite"),
                         "console=ttyS0 quiet loglevel=3 panic=-1 mecom.workload=memwrite "
                         "mecom.wss=64 mecom.rate=8p mecom.hb=1")
        opts = migrate.build_parser().parse_args([])
        self.assertEqual(migrate.kernel_append(opts, "idle"),
                         "console=ttyS0 quiet loglevel=3 panic=-1 mecom.workload=idle")


class CompareTest(unittest.TestCase):
    def test_compare(self):
        with tempfile.TemporaryDirectory() as d:
            a, b = os.path.join(d, "a"), os.path.join(d, "b")
            n = 5000  # pages, > one 16 MiB chunk
            with open(a, "wb") as f:
                f.write(bytes(n * 4096))
            data = bytearray(n * 4096)
            data[4096 * 3 + 5] = 1
            data[4096 * 4500] = 2
            with open(b, "wb") as f:
                f.write(data)
            r = migrate.compare_ram(a, b)
            self.assertFalse(r["identical"])
            self.assertEqual(r["diff_pages"], 2)
            self.assertEqual(r["first_diff_offset"], 4096 * 3)
            self.assertEqual(r["diff_offsets"], [hex(4096 * 3), hex(4096 * 4500)])
            self.assertTrue(migrate.compare_ram(a, a)["identical"])
            saved = migrate.save_diff_pages(a, b, r["diff_offsets"], os.path.join(d, "diff"))
            self.assertEqual(len(saved), 4)
            with open(os.path.join(d, "diff", f"dst-{hex(4096 * 3)}.bin"), "rb") as f:
                page = f.read()
            self.assertEqual((len(page), page[5]), (4096, 1))
            with open(os.path.join(d, "diff", f"src-{hex(4096 * 4500)}.bin"), "rb") as f:
                self.assertEqual(f.read(), bytes(4096))


class _Vm:
    """What verify_after_success needs of a migrate.Qemu."""

    def __init__(self, shm, status, workdir, role):
        self.shm, self._status, self.workdir, self.role = shm, status, workdir, role

    def status(self):
        return self._status


class KeepDiffPagesTest(unittest.TestCase):
    def test_keeps_more_than_the_listed_offsets(self):
        # 20 differing pages: the JSON lists 16 offsets, but every one of
        # the 20 pairs of pages is kept for study (docs/results/zlib-difference.md).
        with tempfile.TemporaryDirectory() as d:
            a, b = os.path.join(d, "src.ram"), os.path.join(d, "dst.ram")
            n = 64
            with open(a, "wb") as f:
                f.write(bytes(n * 4096))
            data = bytearray(n * 4096)
            for i in range(20):
                data[4096 * (2 * i + 1) + 7] = 0x55
            with open(b, "wb") as f:
                f.write(data)
            src = _Vm(a, {"status": "postmigrate", "running": False}, d, "src")
            dst = _Vm(b, {"status": "paused", "running": False}, d, "dst")
            opts = migrate.build_parser().parse_args(["--no-cont-check"])
            res = {"dst_migrate_status": "completed"}
            self.assertFalse(migrate.verify_after_success(src, dst, opts, res))
            self.assertEqual(res["ram_compare"]["diff_pages"], 20)
            self.assertEqual(len(res["ram_compare"]["diff_offsets"]), 16)
            kept = sorted(os.listdir(os.path.join(d, "dst.diff-pages")))
            self.assertEqual(len(kept), 40)
            self.assertEqual(res["diff_pages_kept"], 20)
            self.assertIn(f"dst-{hex(4096 * 39)}.bin", kept)


if __name__ == "__main__":
    unittest.main()


class ExpectStatTest(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(migrate.parse_expect_stat("cbc.pages-delta>0"),
                         (["cbc", "pages-delta"], 0.0))
        for bad in ("cbc.pages-delta", "pages>0", "cbc.x>y"):
            with self.assertRaises(argparse.ArgumentTypeError):
                migrate.parse_expect_stat(bad)

    def test_only_the_named_method_is_checked(self):
        exp = [migrate.parse_expect_stat("cbc.pages-delta>0")]
        self.assertIsNone(migrate.check_expected_stats(exp, "none", {}))
        self.assertIsNone(migrate.check_expected_stats(
            exp, "cbc", {"cbc": {"pages-delta": 5}}))
        self.assertIn("= 0", migrate.check_expected_stats(
            exp, "cbc", {"cbc": {"pages-delta": 0}}))
        self.assertIn("None", migrate.check_expected_stats(exp, "cbc", {}))
