"""Unit tests of faults.py's verdicts (no QEMU needed)."""

import contextlib
import io
import types
import unittest

import faults as F


def trial(kind="flip", fired=True, status="failed", **kw):
    res = {"kind": kind, "trial": 1, "trigger": 40, "status": status,
           "injected": ({"channel": 1, "packet_num": 7, "later_data": kw.pop("later", 5)}
                        if fired else None),
           "error_channel": 1, "dst_ran": False, "src_running": True}
    res.update(kw)
    return res


def finish(results):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        rc = F.finish(types.SimpleNamespace(json=None), results, {})
    return rc, out.getvalue()


class TrialVerdictTest(unittest.TestCase):
    def test_a_fault_that_never_fired_fails_the_trial(self):
        r = trial(fired=False, status="completed", verified=True, ram_identical=True)
        self.assertFalse(F.judge_trial(r))
        self.assertIn("never fired", r["error"])

    def test_a_detected_fault_passes(self):
        self.assertTrue(F.judge_trial(trial()))

    def test_a_detected_fault_that_ran_the_destination_fails(self):
        self.assertFalse(F.judge_trial(trial(dst_ran=True)))

    def test_an_accepted_fault_passes_only_with_identical_ram(self):
        self.assertTrue(F.judge_trial(trial(status="completed", verified=True, ram_identical=True)))
        r = trial(status="completed", verified=False, ram_identical=False)
        self.assertFalse(F.judge_trial(r))

    def test_a_dropped_last_frame_that_completes_fails(self):
        r = trial(kind="drop-last", status="completed", later=0, verified=False,
                  ram_identical=False, ram_compare={"diff_pages": 3})
        self.assertFalse(F.judge_trial(r))
        self.assertIn("not detected", r["error"])


class RunRulesTest(unittest.TestCase):
    def test_every_kind_must_fire_once(self):
        results = [dict(trial(kind="flip"), ok=True), dict(trial(kind="drop", fired=False))]
        never = F.unfired_kinds(["flip", "drop"], results)
        self.assertEqual([r["kind"] for r in never], ["drop"])
        self.assertIn("never fired in 1 trials", never[0]["error"])
        self.assertEqual(finish(results[:1] + never)[0], 1)

    def test_any_failure_fails_the_run(self):
        rc, out = finish([{"ok": True}, {"ok": False}])
        self.assertEqual(rc, 1)
        self.assertIn("1 passed, 1 failed", out)
        self.assertEqual(finish([{"ok": True}])[0], 0)


def cycle(point="active", at="active", status="cancelled", **kw):
    c = {"cycle": 1, "point": point, "status_at_cancel": at, "status": status,
         "src_running": True, "retry_ok": True, "proxy_held": point in F.PROXY_HOLD}
    c.update(kw)
    return c


class CancelVerdictTest(unittest.TestCase):
    def test_a_cancel_after_completion_fails_the_cycle(self):
        c = cycle(at="completed", status="completed")
        self.assertFalse(F.judge_cycle(c))
        self.assertIn("did not cancel a running migration", c["error"])

    def test_cancels_at_each_point_pass(self):
        for point, state in F.EXPECTED_STATE.items():
            self.assertTrue(F.judge_cycle(cycle(point, state)), point)
        self.assertTrue(F.judge_cycle(cycle("final-sync", "device", "failed")))

    def test_the_state_must_be_the_points(self):
        self.assertFalse(F.judge_cycle(cycle("pre-switchover", "active")))
        self.assertFalse(F.judge_cycle(cycle("active", "setup")))

    def test_a_late_cycle_needs_the_proxy_to_have_held(self):
        self.assertFalse(F.judge_cycle(cycle("final-sync", "device", proxy_held=False)))

    def test_a_destination_that_ran_fails_the_cycle(self):
        self.assertFalse(F.judge_cycle(cycle("final-sync", "device", dst_ran=True)))

    def test_retry_and_source_still_count(self):
        self.assertFalse(F.judge_cycle(cycle(src_running=False)))
        self.assertFalse(F.judge_cycle(cycle(retry_ok=False, retry_error="RAM differs")))

    def test_every_point_comes_round_within_one_rotation(self):
        points = {F.cancel_point(c) for c in range(1, len(F.CANCEL_POINTS) + 1)}
        self.assertEqual(points, set(F.EXPECTED_STATE))

    def test_cycles_are_counted_by_the_state_they_cancelled(self):
        cs = [cycle(), cycle(), cycle("final-sync", "device", "failed"),
              cycle(at="completed", status="completed")]
        for c in cs:
            F.judge_cycle(c)
        rows = F.cycles_by_state(cs)
        self.assertEqual(rows[("active", "active")], {"cycles": 2, "cancelled": 2, "failed": 0,
                                                      "other": 0, "ok": 2})
        self.assertEqual(rows[("final-sync", "device")]["failed"], 1)
        self.assertEqual(rows[("active", "completed")], {"cycles": 1, "cancelled": 0, "failed": 0,
                                                         "other": 1, "ok": 0})


if __name__ == "__main__":
    unittest.main()
