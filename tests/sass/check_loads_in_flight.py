#!/usr/bin/env python3
"""Static check of the kernels' load scheduling, from their SASS (no GPU needed).

Compiles tests/sass/probe_kernels.cu for sm_90, disassembles it and checks that the hot loops
keep several global loads in flight per thread, as the fourth session's changes made them do
(see docs/tuning-notes.md): a compiler or source change that puts a bounds test back into an
unrolled loop fails here instead of silently halving batch-1 speed. It also checks the attend
and fused cluster kernels' register counts (their blocks per SM), that none spills to local
memory, and that the cluster kernels' barriers carry no GPU-scope fences but the last.

  check_loads_in_flight.py --nvcc NVCC --include DIR [--tools DIR]

Needs cuobjdump and nvdisasm (on PATH, in --tools, or under the CUDA toolkit); exits 77
(skipped) where they are missing. From PyPI: nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm.
"""
import argparse
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SKIP = 77

spec = importlib.util.spec_from_file_location("sass_loads", ROOT / "scripts" / "sass_loads.py")
sass_loads = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sass_loads)

# (kernel name fragment, load opcode, fewest in flight the best such load must reach); each
# was 1 before the fix.
EXPECTED = [
    ("score_kernel<__nv_bfloat16, 128>", "LDG.E.EF.128", 8),  # rows of K transposed
    ("score_kernel<__nv_bfloat16, 128>", "LDG.E", 8),  # the length, with the query's loads
    ("attend_kernel<__nv_bfloat16, 128, false>", "LDG.E", 7),  # the row indices of a batch
    ("select_kernel<true, 1024>", "LDG.E.128", 4),  # logits into keys
    ("select_cluster_kernel<256>", "LDG.E.128", 4),
    ("select_cluster_kernel<512>", "LDG.E.128", 4),
]

# (kernel name fragment, most registers, most bytes of local memory): the attend kernel's
# occupancy, 4 direct or 3 staged blocks of 128 threads per SM, as run 8's code reached it.
# Run 9a lost a block per SM in the staged variant to a change elsewhere in the kernel (208
# registers, GQA 10-15% slower at large batch); __launch_bounds__ now holds the count, so what
# this checks is that it still does and that no variant spills to local memory to fit.
REGISTERS = [
    ("attend_kernel<__nv_bfloat16, 128, false>", 128, 0),
    ("attend_kernel<__nv_bfloat16, 128, true>", 168, 0),
    # The cluster route: 3 blocks of 256 threads per SM, so that batch 1's 32 clusters of 8
    # are resident at once on an H100 (fused_min_blocks; at 128 registers 29 were). Under that
    # cap ptxas may keep one value in local memory, stored once and reloaded at step
    # boundaries (once the KV head; since the online softmax stats of the twenty-fourth
    # session a predicate, stored after the prologue and reloaded once before the attention
    # step); more than that is a spill in a loop.
    ("sparq_fused_kernel<__nv_bfloat16, 128, 8>", 80, 8),
]


# Kernels whose histogram adds must all be converged: no __activemask (VOTE.ANY Rn, PT, PT),
# which a match under a per-key bounds test needed (fifteenth session; it was 16 per kernel).
CONVERGED = [
    "select_kernel<true, 1024>",
    "select_kernel<true, 512>",
    "select_cluster_kernel<256>",
    "select_cluster_kernel<512>",
]


# Cluster kernels whose barriers order shared memory only (device::cluster_sync_shared), but
# for the last, which keeps each block's shared memory alive until the cluster has read it:
# (kernel name fragment, most GPU-scope MEMBARs). Each cluster.sync() compiles to one, which
# waits for every outstanding memory access (before the eighteenth session: 4 and 5 in the
# code, one per radix pass and per exchange at run time).
FENCES = [
    ("select_cluster_kernel<256>", 1),
    ("select_cluster_kernel<512>", 1),
    ("sparq_fused_kernel<__nv_bfloat16, 128, 8>", 1),
]


def find_tool(name, extra):
    for d in extra:
        p = pathlib.Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return shutil.which(name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nvcc", required=True)
    ap.add_argument("--include", required=True)
    ap.add_argument("--tools", action="append", default=[])
    args = ap.parse_args()
    cuda_bin = str(pathlib.Path(args.nvcc).resolve().parent)
    dirs = args.tools + [cuda_bin]
    cuobjdump, nvdisasm = find_tool("cuobjdump", dirs), find_tool("nvdisasm", dirs)
    if not cuobjdump or not nvdisasm:
        print("skipped: cuobjdump or nvdisasm not found (pip: nvidia-cuda-cuobjdump, "
              "nvidia-cuda-nvdisasm)")
        return SKIP
    env = dict(os.environ, PATH=os.pathsep.join([str(pathlib.Path(nvdisasm).parent),
                                                 os.environ.get("PATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        cubin = pathlib.Path(tmp) / "probe.cubin"
        subprocess.run([args.nvcc, "-std=c++17", "-O3", "-arch=sm_90", "-cubin",
                        "-I", args.include, str(HERE / "probe_kernels.cu"), "-o", str(cubin)],
                       check=True)
        text = subprocess.run([cuobjdump, "-sass", str(cubin)], check=True, env=env,
                              capture_output=True, text=True).stdout
        usage = subprocess.run([cuobjdump, "-res-usage", str(cubin)], check=True, env=env,
                               capture_output=True, text=True).stdout
    functions = {sass_loads.demangle(n): body for n, body in sass_loads.functions(text)}
    failed = 0
    for fragment, op, want in EXPECTED:
        bodies = [b for n, b in functions.items() if fragment in n]
        if not bodies:
            print(f"FAIL {fragment}: not in the SASS")
            failed += 1
            continue
        best = max((n for _, o, n in sass_loads.analyse(bodies[0]) if o == op), default=0)
        verdict = "ok  " if best >= want else "FAIL"
        failed += best < want
        print(f"{verdict} {fragment}: {op} loads, up to {best} in flight (want >= {want})")
    for fragment in CONVERGED:
        bodies = [b for n, b in functions.items() if fragment in n]
        if not bodies:
            print(f"FAIL {fragment}: not in the SASS")
            failed += 1
            continue
        masks = sum(1 for _, o, a in bodies[0]
                    if o == "VOTE.ANY" and re.match(r"R\d+, PT, PT$", a))
        failed += masks > 0
        print(f"{'ok  ' if masks == 0 else 'FAIL'} {fragment}: {masks} active-mask votes "
              f"(want 0: every histogram add converged)")
    for fragment, most in FENCES:
        bodies = [b for n, b in functions.items() if fragment in n]
        if not bodies:
            print(f"FAIL {fragment}: not in the SASS")
            failed += 1
            continue
        membars = sum(1 for _, o, _ in bodies[0] if o.startswith("MEMBAR") and o.endswith(".GPU"))
        failed += membars > most
        print(f"{'ok  ' if membars <= most else 'FAIL'} {fragment}: {membars} GPU-scope MEMBARs "
              f"(want <= {most}: the cluster barriers order shared memory only)")
    resources = {}  # demangled name -> (registers, local memory bytes)
    name = None
    for line in usage.splitlines():
        m = re.search(r"Function (\S+):", line)
        if m:
            name = sass_loads.demangle(m.group(1))
            continue
        m = re.search(r"REG:(\d+) STACK:(\d+).*LOCAL:(\d+)", line)
        if m and name:  # spills go to the stack frame
            resources[name] = (int(m.group(1)), int(m.group(2)) + int(m.group(3)))
    for fragment, most, most_local in REGISTERS:
        found = [v for n, v in resources.items() if fragment in n]
        if not found:
            print(f"FAIL {fragment}: no resource usage")
            failed += 1
            continue
        regs, local = found[0]
        ok = regs <= most and local <= most_local
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {fragment}: {regs} registers (want <= {most}), "
              f"{local} bytes of local memory (want <= {most_local})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
