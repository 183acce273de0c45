#!/usr/bin/env python3
"""scripts/gpu-check.sh's plumbing, run here without a GPU: the part of the script that only
runs on a device machine (benchmarks, JSON merges, the dataflow setting handed to the Llama
decode, the summary rows) is run against stand-in programs that write what the real ones
write (a fake nvidia-smi, bench_kernels, bench_sweep and llama2_chat in a temporary build
folder). It checks the script's wiring, not any measurement: a bash error or a wrong file
name there would otherwise first show on the GPU, whose time is scarce."""
import json
import os
import pathlib
import stat
import subprocess
import tempfile
import textwrap
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]

FAKE_SMI = """#!/bin/sh
case "$1" in
  -L) echo "GPU 0: Stand-in GPU (UUID: none)" ;;
  *) echo "Stand-in GPU, 0.0, 81559 MiB" ;;
esac
"""

# bench_kernels: the main rows, (filter Stream|Dependent) the options never timed, or (filter
# BM_SparqRouteDataflow) the dataflow rows with a tuning row at B1 S32k that beats the default.
FAKE_BENCH_KERNELS = """#!/usr/bin/env python3
import json, sys
args = dict(a.split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
def row(name, us):
    return {"name": name, "time_us": us, "GBps": 1000.0, "pct_of_copy_bw": 33.0,
            "real_time": us, "time_unit": "us"}
if args.get("--benchmark_filter") == "BM_SparqRouteDataflow":
    t = "BM_SparqRouteDataflowTuning/B:1/S:{}/lag_pct:{}/steps:{}/hist:{}/rows:{}/iterations:1/manual_time"
    rows = [row(t.format(32768, 100, 1, 1, 128), 40.0), row(t.format(32768, 25, 2, 1, 256), 33.0),
            row(t.format(32768, 50, 1, 0, 128), 38.0), row(t.format(16384, 100, 1, 0, 128), 25.0),
            row(t.format(16384, 50, 1, 0, 128), 22.0),
            row("BM_SparqRouteDataflow/B:1/S:32768/manual_time", 40.0)]
elif args.get("--benchmark_filter") == "Stream|Dependent":
    rows = [row("BM_SparqRouteThreeStream/B:1/S:32768/manual_time", 70.0)]
else:
    rows = [row("BM_CopyCeiling/manual_time", 700.0), row("BM_DenseDecode/B:1/S:32768/manual_time", 187.0)]
    for n, us in ((8, 36.0), (16, 34.0), (32, 31.0)):
        rows.append(dict(row(f"BM_DenseDecodeSplits/B:1/S:4096/splits:{n}/iterations:1/manual_time", us),
                         default_splits=16))
json.dump({"context": {}, "benchmarks": rows}, open(args["--benchmark_out"], "w"))
print("ran", args.get("--benchmark_filter"))
"""

# bench_llama_matvec: the four projections alone and the chain.
FAKE_BENCH_MATVEC = """#!/usr/bin/env python3
import json, sys
args = dict(a.split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
def row(name, us):
    return {"name": name, "time_us": us, "GBps": 2700.0, "pct_of_copy_bw": 90.0,
            "real_time": us, "time_unit": "us"}
rows = [row("BM_LlamaMatvec/qkv_rope/iterations:1/manual_time", 36.0),
        row("BM_LlamaMatvec/qkv_rope_append/iterations:1/manual_time", 37.0),
        row("BM_LlamaMatvec/o/iterations:1/manual_time", 13.0),
        row("BM_LlamaMatvec/gate_up_silu/iterations:1/manual_time", 62.0),
        row("BM_LlamaMatvec/down/iterations:1/manual_time", 31.0),
        row("BM_LlamaMatvecLayerChain/pdl:0/iterations:1/manual_time", 150.0),
        row("BM_LlamaMatvecLayerChain/pdl:1/iterations:1/manual_time", 145.0),
        dict(row("BM_LlamaMatvecPrefetchO/l2:0/iterations:1/manual_time", 98.0), wait_us=30.0,
             prefetch_mb=0.0),
        dict(row("BM_LlamaMatvecPrefetchO/l2:1/iterations:1/manual_time", 86.5), wait_us=30.0,
             prefetch_mb=33.5)]
json.dump({"context": {}, "benchmarks": rows}, open(args["--benchmark_out"], "w"))
"""

FAKE_BENCH_SWEEP = """#!/usr/bin/env python3
import json, os, re, sys
args = dict(a.split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
m = re.search(r"Hkv(\\d+)/B(\\d+)", args["--benchmark_filter"])
hkv, batch = m.groups() if m else ("8", "1")  # gpu-session.sh's A/B filter: any rows
block = os.environ.get("SPARQ_ROUTE") == "block"  # gpu-session.sh's forced routes
rows = [{"name": f"sweep/Hq32_Hkv{hkv}/B{batch}/S{s}/c8/iterations:1/manual_time",
         "dense_us": 10.0 * s / 1024, "sparq_us": (2.0 if block else 4.0) * s / 1024 + 20,
         "speedup": 1.0, "theory": 8.0, "auto_vs_dense": 1.0, "dense_pct_bw": 90.0,
         "sparq_pct_bw": 40.0, "route": 1 if block else 2, "time_us": 1.0, "real_time": 1.0,
         "time_unit": "us"}
        for s in (1024, 16384, 32768)]
json.dump({"context": {}, "benchmarks": rows}, open(args["--benchmark_out"], "w"))
"""

# llama2_chat: says which settings it ran with, in the real program's output format.
FAKE_CHAT = """#!/bin/sh
echo "  environment: SPARQ_ROUTE=${SPARQ_ROUTE:-} SPARQ_FLOW=${SPARQ_FLOW:-} SPARQ_SELECT=${SPARQ_SELECT:-} args: $*"
case "$*" in
  *--bench-fill*) echo "  prefill of 4096 random tokens: 0.200 s (20480 tokens/s; gemm attention)" ;;
esac
echo "  dense:    6.840 ms/token (76% of the bandwidth bound)"
echo "  SparQ:    7.110 ms/token (stand-in, attention transfers 0.125 of dense)"
echo "  speedup: 0.96x"
echo "  where a step's time goes (ms; launched without a graph, events between parts):"
echo "    dense: q/k/v 1.065 | append 0.000 | attention 0.846 | o 0.490 | MLP 2.514 | other 0.099 | total 5.014"
echo "    SparQ: q/k/v 1.065 | append 0.000 | attention 0.859 | o 0.491 | MLP 2.514 | other 0.101 | total 5.029"
"""


def executable(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class GpuCheckPlumbing(unittest.TestCase):
    def test_bench_only_run_hands_the_best_dataflow_setting_to_the_llama_decode(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            build, out, bin_dir = tmp / "build", tmp / "out", tmp / "bin"
            executable(bin_dir / "nvidia-smi", FAKE_SMI)
            executable(build / "tests/gpu/test_gpu_sparq_decode", "#!/bin/sh\nexit 0\n")
            executable(build / "bench/bench_kernels", FAKE_BENCH_KERNELS)
            executable(build / "bench/bench_sweep", FAKE_BENCH_SWEEP)
            executable(build / "bench/bench_llama_matvec", FAKE_BENCH_MATVEC)
            executable(build / "examples/llama2/llama2_chat", FAKE_CHAT)
            env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
            env.pop("OUT", None)
            run = subprocess.run(
                ["bash", "scripts/gpu-check.sh", "--bench-only", "--build-dir", str(build),
                 "--out", str(out)],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            summary = (out / "summary.txt").read_text()
            log = (out / "bench.log").read_text()
            detail = f"rc {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
            self.assertIn("card: Stand-in GPU", summary, detail)
            self.assertRegex(summary, r"bench_kernels +done", detail)
            self.assertRegex(summary, r"bench_kernels dataflow +done", detail)
            self.assertRegex(summary, r"bench_kernels stream/dependent +done", detail)
            self.assertRegex(summary, r"bench_sweep +done", detail)
            self.assertRegex(summary, r"dataflow best B1 S16k +lag_pct=50,steps=1,hist=0,rows=128")
            self.assertRegex(summary,
                             r"dataflow best B1 S32k +lag_pct=25,steps=2,hist=auto,rows=256")
            # Eight decode runs, each reported; the dataflow ones ran with the setting of their
            # nearest tuned shape, the others with none.
            for s_len in (4096, 32768):
                for variant in ("default", "new", "dataflow", "l2"):
                    self.assertRegex(summary,
                                     rf"llama2-7b decode {s_len} {variant} +dense: 6.840 ms/token"
                                     r" \(76% of the bandwidth bound\); SparQ: 7.110 ms/token; "
                                     r"speedup: 0.96x", detail)
            self.assertIn("SPARQ_ROUTE=dataflow SPARQ_FLOW=lag_pct=25,steps=2,hist=auto,rows=256 "
                          "SPARQ_SELECT=auto args: --random-weights llama2-7b --bench-decode 32768",
                          log)
            self.assertIn("SPARQ_ROUTE=dataflow SPARQ_FLOW=lag_pct=50,steps=1,hist=0,rows=128 "
                          "SPARQ_SELECT=auto args: --random-weights llama2-7b --bench-decode 4096",
                          log)
            self.assertIn("SPARQ_ROUTE=auto SPARQ_FLOW= SPARQ_SELECT=stream", log)
            self.assertIn("SPARQ_ROUTE=auto SPARQ_FLOW= SPARQ_SELECT=auto args: --random-weights "
                          "llama2-7b --bench-decode 32768 --bench-steps 32 --l2-prefetch", log)
            self.assertRegex(summary, r"llama2-7b prefill 4096 gemm +prefill of 4096")
            self.assertRegex(summary, r"llama2-7b prefill 32768 gemm +prefill of")
            self.assertIn("dataflow tuning (best setting per shape", summary)
            self.assertRegex(summary, r"compute-sanitizer +skipped")
            merged = json.loads((out / "bench_kernels.json").read_text())
            self.assertIn("dense splits B1 S4096: fastest 32 splits 31.0 us, the plan's 16: 34.0 us",
                          summary)
            self.assertEqual(len(merged["benchmarks"]), 21,
                             "the three bench_kernels parts and the matvec rows merged")
            self.assertRegex(summary, r"bench_llama_matvec +done", detail)
            self.assertIn("llama 7B matvecs per layer: alone 143.0 us; chain 150.0 us (90% of "
                          "copy bw); chain --pdl 145.0 us (90% of copy bw)", summary)
            self.assertIn("llama 7B q/k/v, 30 us of waiting, o: 98.0 us; with o prefetched into "
                          "L2 86.5 us (33.5 MB prefetched)", summary)
            self.assertEqual(run.returncode, 0, detail)

    def test_a_budget_cuts_a_hung_test_and_keeps_the_benchmarks(self):
        """--budget: a test binary that hangs is stopped in time for the benchmarks (its row
        says TIMEOUT), skipped tests are counted, and the sweep JSON is there."""
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            build, out, bin_dir = tmp / "build", tmp / "out", tmp / "bin"
            executable(bin_dir / "nvidia-smi", FAKE_SMI)
            executable(build / "tests/gpu/test_gpu_sparq_decode", "#!/bin/sh\nexec sleep 600\n")
            executable(build / "tests/gpu/test_gpu_kv_append",
                       "#!/bin/sh\necho '[  SKIPPED ] KvAppend.Gpu (0 ms)'\n"
                       "echo '[  SKIPPED ] 1 test, listed below:'\n"
                       "echo '[  SKIPPED ] KvAppend.Gpu'\n")
            executable(build / "bench/bench_kernels", FAKE_BENCH_KERNELS)
            executable(build / "bench/bench_sweep", FAKE_BENCH_SWEEP)
            env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
            env.pop("OUT", None)
            run = subprocess.run(
                ["bash", "scripts/gpu-check.sh", "--bench", "--no-sanitizers", "--budget", "256",
                 "--build-dir", str(build), "--out", str(out)],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=200)
            summary = (out / "summary.txt").read_text()
            detail = f"rc {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
            self.assertRegex(summary, r"test_gpu_sparq_decode +TIMEOUT \(1[0-9] s\)", detail)
            self.assertRegex(summary, r"test_gpu_kv_append +pass \(\d+ s, 4 skipped\)", detail)
            self.assertRegex(summary, r"bench_kernels +done", detail)
            self.assertRegex(summary, r"bench_sweep +done", detail)
            sweep = json.loads((out / "bench_sweep.json").read_text())
            self.assertEqual(len(sweep["benchmarks"]), 24, "every sweep group merged")
            self.assertFalse((out / "sanitizer.log").exists(), "no empty sanitizer log")
            self.assertEqual(run.returncode, 1, detail)

    def test_a_run_split_in_two(self):
        """--no-sanitizers runs the tests but no sanitizer; --sanitizers-only runs each
        sanitizer call and nothing else."""
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            build, bin_dir = tmp / "build", tmp / "bin"
            calls = tmp / "sanitizer_calls.txt"
            executable(bin_dir / "nvidia-smi", FAKE_SMI)
            executable(bin_dir / "compute-sanitizer", f'#!/bin/sh\necho "$*" >> {calls}\n')
            for name in ("tests/gpu/test_gpu_sparq_decode", "tests/gpu/test_gpu_kv_append"):
                executable(build / name, "#!/bin/sh\necho '[  PASSED  ] 1 test.'\n")
            env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
            env.pop("OUT", None)

            def gpu_check(*flags, out):
                return subprocess.run(
                    ["bash", "scripts/gpu-check.sh", *flags, "--build-dir", str(build),
                     "--out", str(out)],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

            first = gpu_check("--no-sanitizers", out=tmp / "first")
            summary = (tmp / "first" / "summary.txt").read_text()
            self.assertRegex(summary, r"test_gpu_sparq_decode +pass", first.stdout)
            self.assertRegex(summary, r"compute-sanitizer +skipped")
            self.assertFalse(calls.exists(), "no sanitizer ran")
            self.assertEqual(first.returncode, 0, first.stdout + first.stderr)

            second = gpu_check("--sanitizers-only", out=tmp / "second")
            summary = (tmp / "second" / "summary.txt").read_text()
            self.assertNotIn("test_gpu_sparq_decode", summary)
            self.assertRegex(summary, r"compute-sanitizer memcheck +clean")
            self.assertRegex(summary, r"compute-sanitizer racecheck +clean")
            ran = calls.read_text()
            self.assertIn("--tool memcheck", ran)
            self.assertIn("--tool racecheck", ran)
            self.assertIn("test_gpu_sparq_dataflow", ran)
            self.assertEqual(second.returncode, 0, second.stdout + second.stderr)


# bench_kernels of a baseline build: the rows FAKE_BENCH_KERNELS writes, each twice as slow.
FAKE_OLD_BENCH_KERNELS = """#!/usr/bin/env python3
import json, sys
args = dict(a.split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
rows = [{"name": "BM_DenseDecode/B:1/S:32768/manual_time", "real_time": 374.0,
         "time_unit": "us"}]
json.dump({"context": {}, "benchmarks": rows}, open(args["--benchmark_out"], "w"))
"""


def fake_phases(keys_us):
    """A stand-in phase_times: one section in its output's format."""
    return f"""#!/bin/sh
cat <<'PHASES'
NVIDIA Stand-in, SM clock attribute 1980 MHz

== fused cluster (sparq_fused_kernel<bf16,128,8>), batch 1, S 32768 (r 16, k 2048)
kernel (events) 53.7 us; first block start to last block end 49.5 us; block span 44.3 us (median)
step (ends at)      median us slowest us  launches
keys+hist0               {keys_us:.2f}       7.62        21
PHASES
"""


class GpuSessionPlumbing(unittest.TestCase):
    def test_one_call_runs_the_ab_the_check_and_the_sanitizers_and_packs_them(self):
        """scripts/gpu-session.sh on a carried build with a baseline: the A/B tables (with the
        candidate / baseline ratio), gpu-check's summary, the sanitizers' and the carry's
        BUILT_FROM, all in session.tgz."""
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            build, out, bin_dir = tmp / "carry", tmp / "out", tmp / "bin"
            executable(bin_dir / "nvidia-smi", FAKE_SMI)
            executable(bin_dir / "compute-sanitizer", "#!/bin/sh\nexit 0\n")
            executable(build / "tests/gpu/test_gpu_sparq_decode",
                       "#!/bin/sh\necho '[  PASSED  ] 1 test.'\n")
            executable(build / "bench/bench_kernels", FAKE_BENCH_KERNELS)
            executable(build / "bench/bench_sweep", FAKE_BENCH_SWEEP)
            executable(build / "old/bench_kernels", FAKE_OLD_BENCH_KERNELS)
            executable(build / "old/bench_sweep", FAKE_BENCH_SWEEP)
            executable(build / "examples/llama2/llama2_chat", FAKE_CHAT)
            executable(build / "bench/phase_times", fake_phases(6.0))
            executable(build / "bench/phase_times_plain_adds", fake_phases(4.5))
            (build / "BUILT_FROM").write_text("built from 0123abc\n")
            env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
            env.pop("OUT", None)
            run = subprocess.run(
                ["bash", "scripts/gpu-session.sh", "--build-dir", str(build), "--out", str(out),
                 "--budget", "240"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            detail = run.stdout + run.stderr
            self.assertEqual(run.returncode, 0, detail)
            ab = (out / "ab_kernels.txt").read_text()
            self.assertRegex(ab, r"BM_DenseDecode/B:1/S:32768\S* +374\.0 +187\.0 +0\.500", ab)
            self.assertIn("sweep/Hq32_Hkv8/B1/S16384/c8", (out / "ab_sweep.txt").read_text())
            self.assertRegex((out / "check-summary.txt").read_text(),
                             r"test_gpu_sparq_decode +pass")
            self.assertRegex((out / "sanitizers-summary.txt").read_text(),
                             r"compute-sanitizer memcheck +clean")
            self.assertIn("built from 0123abc", (out / "session.log").read_text())
            # Both routes forced: block / three = (2 * 32 + 20) / (4 * 32 + 20) at S 32k.
            self.assertRegex((out / "routes.txt").read_text(),
                             r"sweep/Hq32_Hkv8/B1/S32768/c8 +84\.0 +148\.0 +0\.568 +yes")
            # The device returns at most 8 files from $OUT.
            returned = [p for p in out.rglob("*") if p.is_file()]
            self.assertLessEqual(len(returned), 8, returned)
            packed = subprocess.run(["tar", "tzf", str(out / "session.tgz")], check=True,
                                    capture_output=True, text=True).stdout
            for name in ("ab_kernels.txt", "ab_sweep.txt", "routes.txt", "check/summary.txt",
                         "sanitizers/summary.txt", "session.log", "gpu.txt", "phases.txt",
                         "phases_plain_adds.txt", "phases_compare.txt"):
                self.assertIn("./" + name, packed.split(), name)
            compared = subprocess.run(["tar", "xzOf", str(out / "session.tgz"),
                                       "./phases_compare.txt"], check=True,
                                      capture_output=True, text=True).stdout
            self.assertRegex(compared, r"keys\+hist0 +6\.00 +4\.50 +\(-1\.50\)", compared)


if __name__ == "__main__":
    unittest.main()
