#!/usr/bin/env python3
"""Describe saved diff pages: <dir>/src-<off>.bin, dst-<off>.bin."""
import glob, os, sys
for d in sys.argv[1:]:
    for s in sorted(glob.glob(os.path.join(d, "src-*.bin"))):
        off = os.path.basename(s)[4:-4]
        a = open(s, "rb").read(); b = open(os.path.join(d, f"dst-{off}.bin"), "rb").read()
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        runs = []
        for i in diff:
            if runs and i <= runs[-1][1] + 1: runs[-1][1] = i
            else: runs.append([i, i])
        print(f"{d} {off}: {len(diff)} bytes differ in {len(runs)} runs; src zero={not any(a)} dst zero={not any(b)}")
        for lo, hi in runs[:8]:
            lo8, hi8 = lo & ~7, (hi | 7) + 1
            print(f"   [{lo:#05x}..{hi:#05x}] src {a[lo8:hi8].hex()} dst {b[lo8:hi8].hex()}")
