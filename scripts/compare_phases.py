#!/usr/bin/env python3
"""Side by side: the step medians of several bench/phase_times outputs (phases.txt, and the
experiments' phases_plain_adds.txt and phases_leader_adds.txt from scripts/gpu-session.sh).

    scripts/compare_phases.py phases.txt phases_plain_adds.txt [phases_leader_adds.txt ...]

For each kernel and length of the first file: the kernel's event time, a block's span, and
each step's median (µs) in every file, with each later file's difference from the first.
"""
import pathlib
import re
import sys

SECTION = re.compile(r"^== (.+?) \((.+?)\), batch (\d+), S (\d+)")
EVENTS = re.compile(r"kernel \(events\) ([\d.]+) us;.*block span ([\d.]+) us")
STEP = re.compile(r"^(\S.*?)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$")


def parse(text):
    """{(kernel, S): {"event": us, "span": us, "steps": {step: median us}}} in file order."""
    sections, cur = {}, None
    for line in text.splitlines():
        m = SECTION.match(line)
        if m:
            cur = {"event": None, "span": None, "steps": {}}
            sections[(m.group(1), int(m.group(4)))] = cur
            continue
        if cur is None:
            continue
        m = EVENTS.search(line)
        if m:
            cur["event"], cur["span"] = float(m.group(1)), float(m.group(2))
            continue
        m = STEP.match(line)
        if m and not line.startswith("step"):
            cur["steps"][m.group(1)] = float(m.group(2))
    return sections


def fmt(v):
    return f"{v:8.2f}" if v is not None else f"{'-':>8}"


def compare(files):
    parsed = [parse(pathlib.Path(f).read_text()) for f in files]
    names = [pathlib.Path(f).stem for f in files]
    lines = []
    for key, first in parsed[0].items():
        lines.append(f"== {key[0]}, S {key[1]}")
        head = f"{'':<18}" + "".join(f"{n[:16]:>17}" for n in names)
        lines.append(head)
        rows = [("kernel (events)", "event"), ("block span", "span")]
        rows += [(s, s) for s in first["steps"]]
        for label, field in rows:
            vals = []
            for p in parsed:
                sec = p.get(key)
                if sec is None:
                    vals.append(None)
                elif field in ("event", "span"):
                    vals.append(sec[field])
                else:
                    vals.append(sec["steps"].get(field))
            cells = [fmt(vals[0]) + " " * 9]
            for v in vals[1:]:
                diff = f"({v - vals[0]:+.2f})" if v is not None and vals[0] is not None else ""
                cells.append(fmt(v) + f"{diff:>9}")
            lines.append(f"{label:<18}" + "".join(cells))
        lines.append("")
    return "\n".join(lines)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    print(compare(argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
