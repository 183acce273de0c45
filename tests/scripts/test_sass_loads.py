#!/usr/bin/env python3
"""scripts/sass_loads.py on hand-written SASS: loads used at once, loads batched, a 64-bit
register pair, a store that uses a loaded value, and a predicated load."""
import importlib.util
import pathlib
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("sass_loads", ROOT / "scripts" / "sass_loads.py")
sass_loads = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sass_loads)


def sass(name, *instructions):
    lines = [f"\t\tFunction : {name}"]
    for i, ins in enumerate(instructions):
        lines.append(f"        /*{i * 16:04x}*/                   {ins} ;   /* 0x0 */")
    return "\n".join(lines) + "\n"


def counts(text):
    (name, body), = list(sass_loads.functions(text))
    return [n for _, _, n in sass_loads.analyse(body)]


class SassLoads(unittest.TestCase):
    def test_one_at_a_time(self):
        text = sass("serial",
                    "LDG.E.EF.128 R20, desc[UR10][R20.64]",
                    "PRMT R69, R22, 0x7632, R69",
                    "LDG.E.EF.128 R20, desc[UR10][R24.64]",
                    "IMAD.U32 R64, R20, 0x10000, RZ")
        self.assertEqual(counts(text), [1, 1])

    def test_batched(self):
        text = sass("batched",
                    "LDG.E.128 R4, desc[UR4][R2.64]",
                    "LDG.E.128 R8, desc[UR4][R2.64+0x10]",
                    "@!P0 LDG.E R12, desc[UR4][R2.64+0x20]",
                    "FADD R0, R7, R11",
                    "FADD R1, R12, R0")
        # R7 is the last word of the first 128-bit load: its first use is the FADD.
        self.assertEqual(counts(text), [3, 2, 1])

    def test_pair_and_store(self):
        text = sass("pair",
                    "LDG.E.64 R10, desc[UR4][R2.64]",
                    "LDG.E R14, desc[UR4][R2.64+0x8]",
                    "STG.E desc[UR4][R10.64], R0",
                    "STG.E desc[UR4][R4.64], R14")
        # The first load's R10:R11 is the next store's address; R14 is the last store's value.
        self.assertEqual(counts(text), [2, 1])


if __name__ == "__main__":
    unittest.main()
