#!/usr/bin/env bash
# Same-card A/B timing of two builds of bench_kernels or bench_sweep (the baseline, for
# instance built from an older commit, and the candidate): the rows that match a filter, run
# by each binary in turn, ROUNDS times, alternating so that clock and thermal drift fall on
# both. Prints each row's median time per binary and candidate / baseline (for bench_sweep,
# SparQ's time and, as "[dense]", dense's); the JSON of every run stays in --out.
#
#   scripts/gpu-ab.sh --base BIN --cand BIN [--filter REGEX] [--rounds N] [--out DIR]
#                     [--timeout SECONDS]
#
# The binaries find Google Benchmark through LD_LIBRARY_PATH (scripts/gpu-env.sh sets it for
# a carried build). --timeout bounds each run (default 120 s); a run cut short is reported and
# the rows it did not reach are missing from the table.
set -uo pipefail
base=""
cand=""
filter='^BM_(DenseDecode|SparqDecode|SparqStage(Scores|Select|Attend))/B:(1|64)/'
rounds=1
out=${OUT:-out/gpu-ab}/ab
per_run=120
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base=$2; shift ;;
    --cand) cand=$2; shift ;;
    --filter) filter=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --out) out=$2; shift ;;
    --timeout) per_run=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -x "$base" ] || [ ! -x "$cand" ]; then
  echo "error: --base and --cand must name bench_kernels binaries (got '$base', '$cand')" >&2
  exit 2
fi
mkdir -p "$out"
for ((i = 0; i < rounds; ++i)); do
  for which in base cand; do
    bin=$base
    [ $which = cand ] && bin=$cand
    timeout -k 5 "$per_run" "$bin" --benchmark_filter="$filter" \
      --benchmark_out="$out/${which}_$i.json" --benchmark_out_format=json \
      > "$out/${which}_$i.log" 2>&1
    rc=$?
    [ $rc = 0 ] || echo "note: $which round $i ended with rc $rc (see $out/${which}_$i.log)"
  done
done
python3 - "$out" "$rounds" <<'EOF'
import json, pathlib, statistics, sys
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
times = {"base": {}, "cand": {}}
for which in times:
    for i in range(rounds):
        p = out / f"{which}_{i}.json"
        try:
            rows = json.loads(p.read_text())["benchmarks"]
        except (OSError, ValueError, KeyError):
            continue  # a run cut short leaves no (or no complete) JSON
        for r in rows:
            name = r["name"].replace("/iterations:1/manual_time", "")
            times[which].setdefault(name, []).append(r["real_time"])
            if "dense_us" in r:  # bench_sweep: real_time is SparQ's, dense is a counter
                times[which].setdefault(name + " [dense]", []).append(r["dense_us"])
names = [n for n in times["cand"] if n in times["base"]]
print(f"{'row':<44} {'base us':>10} {'cand us':>10} {'cand/base':>9}")
for n in names:
    b, c = statistics.median(times["base"][n]), statistics.median(times["cand"][n])
    print(f"{n:<44} {b:>10.1f} {c:>10.1f} {c / b:>9.3f}")
EOF
