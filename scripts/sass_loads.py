#!/usr/bin/env python3
"""Global loads in flight, read from SASS: for each global load of a kernel, how many global
loads the thread has issued (this one included) before the first instruction that uses its
result. A loop whose loads all show 1 waits a full memory round trip per load: at low
occupancy (batch 1) such a kernel cannot keep enough bytes in flight to reach the bandwidth.

  cuobjdump -sass build/gpu/bench/bench_kernels > k.sass
  scripts/sass_loads.py k.sass score_kernel           # every function whose name matches
  scripts/sass_loads.py --summary k.sass select        # per opcode: how many loads at each count

cuobjdump and nvdisasm come with the CUDA toolkit, or from PyPI (nvidia-cuda-cuobjdump,
nvidia-cuda-nvdisasm). The scan is straight-line (branches are ignored), so read the result
of a loop body, not of code around branches.
"""
import re
import subprocess
import sys

INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*(.*?)\s*;")
REG = re.compile(r"\bR(\d+)\b(\.64)?")


def functions(text):
    name, body = None, []
    for line in text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            if name:
                yield name, body
            name, body = m.group(1), []
        elif name:
            m = INSTR.search(line)
            if m:
                body.append((m.group(1), m.group(3), m.group(4)))
    if name:
        yield name, body


def regs(operand_text):
    out = set()
    for m in REG.finditer(operand_text):
        r = int(m.group(1))
        out.add(r)
        if m.group(2):
            out.add(r + 1)
    return out


def load_width(op):
    for w, n in ((".128", 4), (".64", 2)):
        if w in op:
            return n
    return 1


def demangle(name):
    try:
        return subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip()
    except OSError:
        return name


def analyse(body):
    rows = []
    for i, (addr, op, args) in enumerate(body):
        if not op.startswith("LDG"):
            continue
        first = args.split(",")[0]
        m = REG.search(first)
        if not m:
            continue
        dst = set(range(int(m.group(1)), int(m.group(1)) + load_width(op)))
        in_flight = 1
        for addr2, op2, args2 in body[i + 1:]:
            parts = args2.split(",", 1)
            srcs = regs(parts[1]) if len(parts) > 1 else set()
            if op2.startswith(("ST", "RED", "ATOM")):
                srcs |= regs(parts[0])
            if dst & srcs:
                break
            if op2.startswith("LDG"):
                in_flight += 1
        rows.append((addr, op, in_flight))
    return rows


def main():
    args = sys.argv[1:]
    summary = "--summary" in args
    args = [a for a in args if a != "--summary"]
    if not args:
        sys.exit(__doc__)
    text = open(args[0]).read()
    pattern = args[1] if len(args) > 1 else ""
    for name, body in functions(text):
        if pattern not in demangle(name):
            continue
        rows = analyse(body)
        print(demangle(name))
        if summary:
            counts = {}
            for _, op, n in rows:
                counts.setdefault(op, {}).setdefault(n, 0)
                counts[op][n] += 1
            for op in sorted(counts):
                hist = ", ".join(f"{n}: {c}" for n, c in sorted(counts[op].items()))
                print(f"  {op:<22} in flight (count): {hist}")
            continue
        for addr, op, n in rows:
            print(f"  {addr}  {op:<22} {n:3d} in flight")


if __name__ == "__main__":
    main()
