"""Run every benchmark in turn: ``python -m benchmarks [--model PATH]`` (extra options go to each script)."""
from __future__ import annotations

import sys

from . import accuracy, clips, roll, speed, stability, uncertainty


def main() -> None:
    args = sys.argv[1:]
    for mod in (accuracy, roll, uncertainty, stability, clips, speed):
        print(f"\n=== {mod.__name__} ===", flush=True)
        mod.main(args)


if __name__ == "__main__":
    main()
