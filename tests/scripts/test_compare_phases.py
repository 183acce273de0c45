#!/usr/bin/env python3
"""scripts/compare_phases.py on run 12's phase times (docs/results/h200-2026-11-28-s19) and a
changed copy: every kernel and length is parsed, each step's difference is the change made,
and a section missing from a later file shows as a dash."""
import importlib.util
import pathlib
import tempfile
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("compare", ROOT / "scripts" / "compare_phases.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)
RUN12 = ROOT / "docs" / "results" / "h200-2026-11-28-s19" / "phases.txt"


class ComparePhases(unittest.TestCase):
    def test_parses_every_section_of_run_12(self):
        p = compare.parse(RUN12.read_text())
        self.assertEqual(len(p), 12)  # 3 kernels x 4 lengths (the block route skipped at 128k)
        cluster16k = p[("fused cluster", 16384)]
        self.assertEqual(cluster16k["event"], 36.5)
        self.assertEqual(cluster16k["span"], 29.2)
        self.assertEqual(cluster16k["steps"]["keys+hist0"], 3.12)
        self.assertEqual(cluster16k["steps"]["compact"], 2.47)
        self.assertEqual(len(cluster16k["steps"]), 14)
        self.assertEqual(p[("fused block", 131072)]["steps"], {})

    def test_differences_and_missing_sections(self):
        text = RUN12.read_text()
        changed = text.replace("keys+hist0               3.12", "keys+hist0               2.00")
        cut = text[: text.index("== fused cluster (sparq_fused_kernel<bf16,128,8>), batch 1, S 131072")]
        with tempfile.TemporaryDirectory() as d:
            a, b = pathlib.Path(d, "a.txt"), pathlib.Path(d, "b.txt")
            a.write_text(changed)
            b.write_text(cut)
            out = compare.compare([str(RUN12), str(a), str(b)])
        section = out[out.index("== fused cluster, S 16384"):]
        keys = next(line for line in section.splitlines() if line.startswith("keys+hist0"))
        self.assertIn("(-1.12)", keys)
        self.assertIn("(+0.00)", keys)
        last = out[out.index("== fused cluster, S 131072"):]
        compact = next(line for line in last.splitlines() if line.startswith("compact"))
        self.assertTrue(compact.rstrip().endswith("-"), compact)


if __name__ == "__main__":
    unittest.main()
