#!/usr/bin/env python3
"""Turns the benchmark JSON (bench_kernels, bench_sweep) into PNG plots and a short table.

  scripts/plot_bench.py --kernels bench_kernels.json --sweep bench_sweep.json --out DIR

Writes DIR/speedup.png (SparQ speedup over dense against S, with the theoretical line) and
DIR/bandwidth.png (% of the measured copy bandwidth per kernel), and prints the key figures.
"""
import argparse
import json
import os
import pathlib
import re
import sys
from collections import defaultdict


def parse(text, name):
    """Google Benchmark JSON; a crashed or timed-out run's truncated file gives the entries it
    finished."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # The last finished entry ends "\n    }", with a comma only if another was begun.
        cut = text.rfind("\n    }")
        try:
            data = json.loads(text[:cut + 6] + "]}") if cut > 0 else {"benchmarks": []}
        except json.JSONDecodeError:
            data = {"benchmarks": []}
        print(f"{name}: truncated, kept {len(data['benchmarks'])} entries")
        return data


def load(path):
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        data = parse(f.read(), path)
    return [b for b in data.get("benchmarks", []) if not b.get("error_occurred")]


def merge(folder, target):
    """Concatenates the benchmarks of every readable JSON file in folder."""
    merged, context = [], None
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json"):
            continue
        data = parse(open(os.path.join(folder, name)).read(), name)
        context = context or data.get("context")
        merged += data.get("benchmarks", [])
    with open(target, "w") as f:
        json.dump({"context": context or {}, "benchmarks": merged}, f, indent=1)
    print(f"merged {len(merged)} entries into {target}")
    return 0


def parse_sweep_name(name):
    # sweep/Hq32_Hkv8/B1/S4096/c8
    parts = name.split("/")
    heads, batch, seq, comp = parts[1], int(parts[2][1:]), int(parts[3][1:]), int(parts[4][1:])
    return heads, batch, seq, comp


def plot_speedup(sweep, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = defaultdict(list)
    for b in sweep:
        heads, batch, seq, comp = parse_sweep_name(b["name"])
        groups[(heads, comp)].append((batch, seq, b["speedup"], b["theory"]))
    keys = sorted(groups)
    heads_list = sorted({k[0] for k in keys})
    comps = sorted({k[1] for k in keys})
    fig, axes = plt.subplots(len(heads_list), len(comps), figsize=(4 * len(comps), 3.4 * len(heads_list)),
                             squeeze=False, sharex=True)
    for i, heads in enumerate(heads_list):
        for j, comp in enumerate(comps):
            ax = axes[i][j]
            pts = groups.get((heads, comp), [])
            for batch in sorted({p[0] for p in pts}):
                xs = sorted((p[1], p[2]) for p in pts if p[0] == batch)
                ax.plot([x for x, _ in xs], [y for _, y in xs], marker="o", label=f"batch {batch}")
            theory = sorted({(p[1], p[3]) for p in pts})
            ax.plot([x for x, _ in theory], [y for _, y in theory], "k--", label="theory")
            ax.axhline(1.0, color="grey", lw=0.8)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{heads}, compression 1/{comp}", fontsize=9)
            ax.set_xlabel("S")
            ax.set_ylabel("speedup over dense")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "speedup.png"), dpi=90)


def plot_bandwidth(kernels, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [(b["name"].replace("BM_", ""), b.get("pct_of_copy_bw", 0.0)) for b in kernels]
    fig, ax = plt.subplots(figsize=(9, max(3, 0.25 * len(rows))))
    ax.barh([r[0] for r in rows], [r[1] for r in rows])
    ax.axvline(100, color="k", lw=0.8)
    ax.set_xlabel("% of measured device-to-device copy bandwidth")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bandwidth.png"), dpi=90)


def kernel_args(name):
    """B and S of a bench_kernels name such as BM_DenseDecode/B:64/S:32768/..."""
    fields = dict(part.split(":", 1) for part in name.split("/") if ":" in part)
    return int(fields.get("B", 0)), int(fields.get("S", 0))


def print_targets(kernels, sweep):
    """Issue 4's targets (H100, bf16, d = 128, Hq = Hkv = 32) against these results."""
    rows = []

    def check(what, values, ok):
        if values:
            lo, hi = min(values), max(values)
            rows.append((what, f"{lo:.2f} to {hi:.2f}", "met" if ok(lo) else "NOT met"))
        else:
            rows.append((what, "no data", "-"))

    dense = [b["pct_of_copy_bw"] for b in kernels if b["name"].startswith("BM_DenseDecode/")
             and kernel_args(b["name"])[0] * kernel_args(b["name"])[1] >= 65536]
    check("dense % of copy bw (B*S >= 64k), >= 85", dense, lambda lo: lo >= 85)
    sparq = [b["pct_of_copy_bw"] for b in kernels if b["name"].startswith("BM_SparqDecode/")]
    check("SparQ 1/8 % of copy bw, >= 75", sparq, lambda lo: lo >= 75)
    for batch in (1, 64):
        sp = []
        for b in sweep:
            heads, bb, seq, comp = parse_sweep_name(b["name"])
            if heads == "Hq32_Hkv32" and bb == batch and comp == 8 and seq >= 16384:
                sp.append(b["speedup"])
        check(f"SparQ 1/8 speedup, B{batch}, S >= 16k, >= 5x", sp, lambda lo: lo >= 5)
    check("auto vs dense over the sweep, >= 0.95", [b["auto_vs_dense"] for b in sweep],
          lambda lo: lo >= 0.95)
    print("targets (issue 4):")
    for what, rng, verdict in rows:
        print(f"  {what:<46} {rng:>16}  {verdict}")


OPTIONS = [("three", "BM_SparqRouteThree/"), ("stream", "BM_SparqRouteThreeStream/"),
           ("dependent", "BM_SparqRouteThreeDependent/"),
           ("both", "BM_SparqRouteThreeStreamDependent/"), ("dataflow", "BM_SparqRouteDataflow/"),
           ("dense+memset", "BM_DenseDecodeMemset/")]


def print_llama_matvec(kernels):
    """bench_llama_matvec: one layer's four projections as the decode step runs them, each
    launched alone (each time includes its own launch), and as a captured chain per layer,
    against the layer's weight bytes at the copy bandwidth (the chain's % of it)."""
    rows = {b["name"].split("/iterations")[0].replace("/manual_time", ""): b
            for b in kernels if b["name"].startswith("BM_LlamaMatvec")}
    names = ("qkv_rope_append", "o", "gate_up_silu", "down")
    singles = [rows.get(f"BM_LlamaMatvec/{k}") for k in names]
    if None in singles:
        return
    line = f"llama 7B matvecs per layer: alone {sum(b['time_us'] for b in singles):.1f} us"
    for pdl in (0, 1):
        chain = rows.get(f"BM_LlamaMatvecLayerChain/pdl:{pdl}")
        if chain is not None:
            line += (f"; chain{' --pdl' if pdl else ''} {chain['time_us']:.1f} us "
                     f"({chain['pct_of_copy_bw']:.0f}% of copy bw)")
    print(line)
    # BM_LlamaMatvecPrefetchO: q/k/v, a wait standing in for attention, o; l2:1 with o's
    # weights prefetched into L2 by the q/k/v matvec (--l2-prefetch).
    pre = [rows.get(f"BM_LlamaMatvecPrefetchO/l2:{l2}") for l2 in (0, 1)]
    if all(b is not None and "time_us" in b for b in pre):
        print(f"llama 7B q/k/v, {pre[0].get('wait_us', 30):.0f} us of waiting, o: "
              f"{pre[0]['time_us']:.1f} us; with o prefetched into L2 {pre[1]['time_us']:.1f} us "
              f"({pre[1].get('prefetch_mb', 0):.1f} MB prefetched)")


def print_dense_splits(kernels):
    """BM_DenseDecodeSplits: dense decoding at batch 1 with a fixed split count per head, the
    fastest per shape against the plan's own choice (counter default_splits)."""
    shapes = defaultdict(list)
    default = {}
    for b in kernels:
        if b["name"].startswith("BM_DenseDecodeSplits/"):
            fields = dict(part.split(":", 1) for part in b["name"].split("/") if ":" in part)
            shape = kernel_args(b["name"])
            shapes[shape].append((b["time_us"], int(fields["splits"])))
            default[shape] = int(b.get("default_splits", 0))
    for shape in sorted(shapes):
        rows = sorted(shapes[shape])
        at_default = [t for t, n in rows if n == default[shape]]
        vs = f", the plan's {default[shape]}: {at_default[0]:.1f} us" if at_default else \
            f" (the plan's {default[shape]} not timed)"
        print(f"dense splits B{shape[0]} S{shape[1]}: fastest {rows[0][1]} splits "
              f"{rows[0][0]:.1f} us{vs}")


def print_options(kernels):
    """The three launches with and without the options not yet in the rule (streaming
    selection, dependent launches), and the dataflow route, per shape: time and speedup over
    dense decode."""
    times = defaultdict(dict)
    for b in kernels:
        for label, prefix in OPTIONS + [("dense", "BM_DenseDecode/")]:
            if b["name"].startswith(prefix):
                times[kernel_args(b["name"])][label] = b["time_us"]
    shapes = [s for s in sorted(times) if len(times[s]) > 2]
    if not shapes:
        return
    print("options (us, and x dense):    B      S " +
          "".join(f"{label:>18}" for label, _ in OPTIONS))
    for shape in shapes:
        t = times[shape]
        cells = ""
        for label, _ in OPTIONS:
            if label in t and "dense" in t:
                cells += f"{t[label]:10.1f} {t['dense'] / t[label]:5.2f}x "
            elif label in t:
                cells += f"{t[label]:10.1f}        "
            else:
                cells += f"{'-':>17} "
        print(f"  {'':<26} {shape[0]:3d} {shape[1]:6d} {cells}")


def library_constant(name, header="include/sparq/flow_schedule.hpp"):
    """An integer `constexpr int NAME = N;` of the library's headers, so that the plots name
    the library's default rather than a copy of it."""
    path = pathlib.Path(__file__).resolve().parent.parent / header
    m = re.search(rf"constexpr int {name} = (\d+);", path.read_text())
    if not m:
        raise RuntimeError(f"{path}: no 'constexpr int {name} = N;'")
    return int(m.group(1))


# The dataflow route's least rows per attend item (kFlowMinAttendRows).
DEFAULT_ATTEND_ROWS = library_constant("kFlowMinAttendRows")


def flow_tuning(kernels):
    """BM_SparqRouteDataflowTuning rows per (B, S): [(time_us, lag_pct, steps, hist, rows)],
    fastest first, and the default setting's time (lags at 100%, 4-chunk items, histogram
    items where the plan takes them: a hist = 1 row exists, attend items of at least
    DEFAULT_ATTEND_ROWS rows), or None where that row is missing."""
    rows = defaultdict(list)
    for b in kernels:
        if not b["name"].startswith("BM_SparqRouteDataflowTuning/"):
            continue
        f = dict(part.split(":", 1) for part in b["name"].split("/") if ":" in part)
        try:
            key = (int(f["B"]), int(f["S"]))
            entry = (float(b["time_us"]), int(f["lag_pct"]), int(f.get("steps", 1)),
                     int(f.get("hist", 0)), int(f.get("rows", 128)))
        except (KeyError, ValueError):
            continue
        rows[key].append(entry)
    out = {}
    for key, r in rows.items():
        r.sort()
        hist_default = 1 if any(x[3] == 1 for x in r) else 0
        default = [x[0] for x in r if x[1:] == (100, 1, hist_default, DEFAULT_ATTEND_ROWS)]
        out[key] = (r, default[0] if default else None)
    return out


def flow_setting(kernels, batch, seq):
    """The fastest BM_SparqRouteDataflowTuning setting at (batch, seq) as SPARQ_FLOW takes it
    (sparq/flow_tuning.hpp), or None without rows there. The benchmark's hist = 1 is the
    plan's rule (its rows exist only where the rule takes histogram items): hist=auto."""
    entry = flow_tuning(kernels).get((batch, seq))
    if not entry:
        return None
    _, lag, steps, hist, rows = entry[0][0]
    return f"lag_pct={lag},steps={steps},hist={'auto' if hist else 0},rows={rows}"


def print_flow_tuning(kernels):
    """The dataflow route's best schedule setting per shape against its default (for
    make_flow_schedule, SparqPlan::flow_chunks_per_item and the histogram rule)."""
    tuning = flow_tuning(kernels)
    if not tuning:
        return
    print("dataflow tuning (best setting per shape; default = lags 100%, 4-chunk items, "
          f"histogram items where the plan takes them, attend items of {DEFAULT_ATTEND_ROWS}+ "
          "rows):")
    for (batch, seq), (rows, default) in sorted(tuning.items()):
        t, lag, steps, hist, attend = rows[0]
        vs = f", default {default:.1f} us ({(t / default - 1) * 100:+.1f}%)" if default else ""
        print(f"  B{batch} S{seq}: {t:.1f} us at lags {lag}%, {4 * steps}-chunk items, "
              f"{'with' if hist else 'no'} histogram items, {attend}+ rows per attend "
              f"item{vs}")


def markdown_tables(kernels, sweep):
    """docs/benchmarks.md's per-kernel table and sweep tables, as Markdown."""
    out = ["| kernel | B | S | median time (µs) | GB/s | % of copy bandwidth |",
           "|---|---:|---:|---:|---:|---:|"]
    for b in kernels:
        name = b["name"].split("/")[0].replace("BM_", "")
        if name == "LlamaMatvec":  # the projection's name is the second part
            name += " " + b["name"].split("/")[1]
        fields = dict(part.split(":", 1) for part in b["name"].split("/") if ":" in part)
        if "splits" in fields:
            name += f" ({fields['splits']} splits)"
        if "lag_pct" in fields:
            hist = ", histogram items" if fields.get("hist", "0") == "1" else ""
            name += f" (lags {fields['lag_pct']}%, {fields.get('steps', '1')}x items{hist})"
        batch, seq = kernel_args(b["name"])
        where = ("—", "—") if name == "CopyCeiling" else (str(batch), str(seq))
        out.append(f"| {name} | {where[0]} | {where[1]} | {b['time_us']:.1f} | {b['GBps']:.0f} "
                   f"| {b['pct_of_copy_bw']:.1f} |")
    cells = {}
    for b in sweep:
        heads, batch, seq, comp = parse_sweep_name(b["name"])
        cells[(heads, comp, batch, seq)] = b
    seqs = sorted({k[3] for k in cells})
    batches = sorted({k[2] for k in cells})
    label = lambda s: f"{s // 1024}k"
    header = ["| batch \\ S | " + " | ".join(label(s) for s in seqs) + " |",
              "|---|" + "---:|" * len(seqs)]
    order = sorted({k[0] for k in cells}, key=lambda h: -int(h.split("Hkv")[1]))
    for heads in order:
        out += ["", f"{heads}, compression 1/8: speedup of SparQ over dense (dense µs / SparQ µs)",
                ""] + header
        for batch in batches:
            row = []
            for seq in seqs:
                b = cells.get((heads, 8, batch, seq))
                row.append(f"{b['speedup']:.2f}× ({b['dense_us']:.0f}/{b['sparq_us']:.0f})"
                           if b else "—")
            out.append(f"| {batch} | " + " | ".join(row) + " |")
    out += ["", "All compressions, speedup only:"]
    for heads in order:
        for comp in sorted({k[1] for k in cells}):
            out += ["", f"{heads}, 1/{comp}:", ""] + header
            for batch in batches:
                row = [f"{cells[(heads, comp, batch, s)]['speedup']:.2f}"
                       if (heads, comp, batch, s) in cells else "—" for s in seqs]
                out.append(f"| {batch} | " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", help="bench_kernels JSON")
    ap.add_argument("--sweep", help="bench_sweep JSON")
    ap.add_argument("--out", default=".", help="folder for the PNG files")
    ap.add_argument("--merge", help="folder of partial sweep JSON files to merge (then exit)")
    ap.add_argument("--merged", help="where --merge writes the merged JSON")
    ap.add_argument("--markdown", help="also write the per-kernel and sweep tables here")
    ap.add_argument("--flow-setting", metavar="B:S",
                    help="print the fastest dataflow tuning setting at batch B, length S from "
                         "--kernels as a SPARQ_FLOW value (nothing without rows), then exit")
    args = ap.parse_args()
    if args.merge:
        return merge(args.merge, args.merged)
    if args.flow_setting:
        try:
            batch, seq = (int(x) for x in args.flow_setting.split(":"))
        except ValueError:
            print(f"--flow-setting takes B:S, not {args.flow_setting}", file=sys.stderr)
            return 2
        setting = flow_setting(load(args.kernels), batch, seq)
        if setting:
            print(setting)
        return 0
    kernels, sweep = load(args.kernels), load(args.sweep)
    if not kernels and not sweep:
        print("no benchmark results to plot", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    for b in kernels:
        if b["name"].startswith("BM_CopyCeiling"):
            print(f"copy bandwidth: {b['GBps']:.0f} GB/s")
    for b in kernels:
        if not b["name"].startswith("BM_CopyCeiling"):
            print(f"{b['name']:<44} {b['time_us']:10.1f} us {b['GBps']:8.0f} GB/s "
                  f"{b['pct_of_copy_bw']:6.1f} %")
    if sweep:
        routes = {0: "cluster", 1: "block", 2: "three"}  # bench_sweep's "route" counter
        print("sweep (c = 8):  heads  B  S  dense_us  sparq_us  speedup  theory  auto/dense  route")
        for b in sweep:
            heads, batch, seq, comp = parse_sweep_name(b["name"])
            if comp == 8 and seq >= 16384:
                route = routes.get(int(b["route"]), "?") if "route" in b else "-"
                print(f"  {heads:<12} {batch:3d} {seq:7d} {b['dense_us']:9.1f} {b['sparq_us']:9.1f} "
                      f"{b['speedup']:6.2f}x {b['theory']:6.2f}x {b['auto_vs_dense']:6.2f}  {route}")
        worst = min(sweep, key=lambda b: b["auto_vs_dense"])
        print(f"auto worst case vs dense: {worst['auto_vs_dense']:.3f} at {worst['name']}")
    print_options(kernels)
    print_llama_matvec(kernels)
    print_dense_splits(kernels)
    print_flow_tuning(kernels)
    print_targets(kernels, sweep)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown_tables(kernels, sweep))
    try:
        if sweep:
            plot_speedup(sweep, args.out)
        if kernels:
            plot_bandwidth(kernels, args.out)
    except ImportError as e:
        print(f"matplotlib missing, no plots: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
