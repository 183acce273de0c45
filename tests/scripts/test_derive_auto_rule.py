#!/usr/bin/env python3
"""scripts/derive_auto_rule.py on synthetic sweeps: the derived rule keeps SparQ off where it
is slower than dense, on where it wins; no rule when none can keep the floor; malformed
entries are skipped."""
import importlib.util
import pathlib
import re
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("derive", ROOT / "scripts" / "derive_auto_rule.py")
derive = importlib.util.module_from_spec(spec)
spec.loader.exec_module(derive)


def entry(hkv, batch, seq, dense_us, sparq_us, theory=7.0, comp=8):
    return {"name": f"sweep/Hq32_Hkv{hkv}/B{batch}/S{seq}/c{comp}/iterations:1/manual_time",
            "dense_us": dense_us, "sparq_us": sparq_us, "theory": theory}


def sweep(entries):
    return {"benchmarks": entries}


class DeriveAutoRule(unittest.TestCase):
    def test_threshold_between_losers_and_winners(self):
        # rows = batch * hkv * seq: SparQ loses below 2^20 rows and wins from 2^21 on.
        entries = [entry(32, 1, 4096, 30, 40), entry(32, 1, 16384, 100, 110),
                   entry(32, 1, 65536, 360, 120), entry(32, 8, 32768, 1400, 300)]
        pts = derive.points(sweep(entries))
        self.assertEqual(len(pts), 4)
        rule = derive.derive(pts, 0.97)
        self.assertIsNotNone(rule)
        worst, geo, chosen = derive.evaluate(pts, rule)
        self.assertGreaterEqual(worst, 0.97)
        self.assertEqual(chosen, 2)
        for rows, theory, speed, name in pts:
            self.assertEqual(derive.picks_sparq(rows, theory, rule), speed > 1, name)

    def test_current_rule_kept_when_it_is_as_good(self):
        entries = [entry(32, 1, 1024, 10, 30), entry(32, 64, 32768, 11000, 2300)]
        self.assertEqual(derive.derive(derive.points(sweep(entries)), 0.97), derive.CURRENT)

    def test_low_theory_points_stay_dense(self):
        # Enough rows, but a theoretical speedup of 1.2 and a measured loss.
        entries = [entry(32, 64, 32768, 11000, 12000, theory=1.2),
                   entry(32, 64, 32768, 11000, 2300, theory=7.0)]
        pts = derive.points(sweep(entries))
        rule = derive.derive(pts, 0.97)
        self.assertFalse(derive.picks_sparq(pts[0][0], 1.2, rule))
        self.assertTrue(derive.picks_sparq(pts[1][0], 7.0, rule))

    def test_no_rule_when_a_huge_point_loses(self):
        # 2^28 rows, past the largest candidate threshold, at a theory every candidate accepts,
        # and slower than dense: every rule picks it, so none keeps the floor.
        entries = [entry(32, 64, 131072, 100, 200, theory=8.0)]
        self.assertIsNone(derive.derive(derive.points(sweep(entries)), 0.97))

    def test_current_rule_is_the_headers(self):
        # CURRENT must stay what sparq::AutoRule defaults to, or "keeps the current rule" lies.
        header = (ROOT / "include" / "sparq" / "attention_mode.hpp").read_text()
        rows = re.search(r"double min_rows = ([0-9.]+);", header)
        theory = re.search(r"double min_theoretical_speedup = ([0-9.]+);", header)
        self.assertIsNotNone(rows)
        self.assertIsNotNone(theory)
        self.assertEqual(derive.CURRENT, (float(rows.group(1)), float(theory.group(1))))

    def test_malformed_entries_are_skipped(self):
        entries = [{"name": "BM_DenseDecode/B:1/S:4096"},
                   dict(entry(32, 1, 4096, 30, 40), error_occurred=True),
                   entry(32, 1, 4096, 30, 0), entry(8, 2, 2048, 30, 20)]
        pts = derive.points(sweep(entries))
        self.assertEqual([p[0] for p in pts], [2 * 8 * 2048])


if __name__ == "__main__":
    unittest.main()
