#!/usr/bin/env python3
"""scripts/plot_bench.py's dataflow tuning summary on synthetic rows: the fastest setting per
shape, the default setting's time (with histogram items only where rows with them exist),
and rows it cannot read skipped."""
import contextlib
import importlib.util
import io
import pathlib
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("plot_bench", ROOT / "scripts" / "plot_bench.py")
plot_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot_bench)


def row(seq, lag, steps, hist, us, rows=256):
    return {"name": f"BM_SparqRouteDataflowTuning/B:1/S:{seq}/lag_pct:{lag}/steps:{steps}/"
                    f"hist:{hist}/rows:{rows}/iterations:1/manual_time", "time_us": us}


class FlowTuning(unittest.TestCase):
    def test_best_and_default_per_shape(self):
        kernels = [row(16384, 100, 1, 0, 30.0), row(16384, 50, 2, 0, 27.0),
                   row(16384, 100, 1, 0, 26.0, rows=128),
                   row(32768, 100, 1, 0, 41.0), row(32768, 100, 1, 1, 39.0),
                   row(32768, 25, 1, 1, 36.5), row(32768, 50, 2, 0, 40.0),
                   {"name": "BM_SparqRouteDataflow/B:1/S:32768/manual_time", "time_us": 1.0}]
        t = plot_bench.flow_tuning(kernels)
        self.assertEqual(sorted(t), [(1, 16384), (1, 32768)])
        rows, default = t[(1, 16384)]
        self.assertEqual(rows[0], (26.0, 100, 1, 0, 128))
        self.assertEqual(default, 30.0)  # no histogram rows at 16k: the default has none
        rows, default = t[(1, 32768)]
        self.assertEqual(rows[0], (36.5, 25, 1, 1, 256))
        self.assertEqual(default, 39.0)  # histogram rows exist: the default takes them
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            plot_bench.print_flow_tuning(kernels)
        self.assertIn("B1 S32768: 36.5 us at lags 25%, 4-chunk items, with histogram items, "
                      "256+ rows per attend item, default 39.0 us (-6.4%)", out.getvalue())
        self.assertIn("B1 S16384: 26.0 us at lags 100%, 4-chunk items, no histogram items, "
                      "128+ rows per attend item, default 30.0 us (-13.3%)", out.getvalue())

    def test_missing_default_and_bad_rows(self):
        kernels = [row(131072, 50, 1, 1, 120.0),
                   {"name": "BM_SparqRouteDataflowTuning/B:1/S:x/lag_pct:50/steps:1/hist:0",
                    "time_us": 5.0},
                   {"name": "BM_SparqRouteDataflowTuning/B:1/S:4096", "time_us": 5.0}]
        t = plot_bench.flow_tuning(kernels)
        self.assertEqual(list(t), [(1, 131072)])
        self.assertIsNone(t[(1, 131072)][1])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            plot_bench.print_flow_tuning(kernels)
        self.assertIn("B1 S131072: 120.0 us at lags 50%", out.getvalue())
        self.assertNotIn("default", out.getvalue().split("\n", 1)[1])

    def test_flow_setting_as_sparq_flow(self):
        kernels = [row(16384, 100, 1, 0, 30.0), row(16384, 50, 2, 0, 27.0, rows=128),
                   row(32768, 100, 1, 1, 39.0), row(32768, 25, 1, 1, 36.5),
                   row(32768, 50, 2, 0, 40.0)]
        self.assertEqual(plot_bench.flow_setting(kernels, 1, 16384),
                         "lag_pct=50,steps=2,hist=0,rows=128")
        self.assertEqual(plot_bench.flow_setting(kernels, 1, 32768),
                         "lag_pct=25,steps=1,hist=auto,rows=256")
        self.assertIsNone(plot_bench.flow_setting(kernels, 1, 131072))
        self.assertIsNone(plot_bench.flow_setting([], 1, 16384))


if __name__ == "__main__":
    unittest.main()
