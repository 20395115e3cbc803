"""A noisy neighbour for ``bench_gate.py record``: keeps one core busy until killed.

python benchmarks/neighbour.py cpu     # pure-Python loop: one core, little memory traffic
python benchmarks/neighbour.py bw      # numpy adds over 128 MB arrays: memory bandwidth
python benchmarks/neighbour.py burst   # like bw for 3 s, then idle for 3 s, repeated
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main(mode: str) -> None:
    a = np.ones(32 * 1024 * 1024, dtype=np.float32)
    b = np.empty_like(a)
    t0 = time.monotonic()
    while True:
        if mode == "cpu":
            x = 0
            for i in range(100_000):
                x += i
        elif mode == "bw":
            np.add(a, 1.0, out=b)
        elif mode == "burst":
            if int(time.monotonic() - t0) % 6 < 3:
                np.add(a, 1.0, out=b)
            else:
                time.sleep(0.05)
        else:
            raise SystemExit(f"unknown mode {mode!r}: use cpu, bw or burst")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu")
