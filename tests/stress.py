"""Run test files again and again while other processes keep cores busy; count each test's outcomes.

    .venv/bin/python tests/stress.py --runs 20 --busy 1 tests/system/test_faults.py tests/system/test_signals.py

Fault tests must pass on a busy 2-core CI machine every time: this is how that is checked
(not part of ``make test``). ``--busy N`` starts N busy-loop processes for the whole run.
Prints, per test, how many runs passed, failed or errored, and the wall time of the runs.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="test files or node ids")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes beside the tests")
    parser.add_argument("--hang", type=int, default=1800, help="seconds after which a run counts as hung")
    args = parser.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    seconds = []
    try:
        for run in range(args.runs):
            started = time.monotonic()
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *args.files],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=args.hang,
                )
            except subprocess.TimeoutExpired as exc:  # a hang is a failure, and the run is cut off
                outcomes[f"run {run + 1} (hung, cut off after {args.hang} s)"]["FAILED"] += 1
                proc = subprocess.CompletedProcess(exc.cmd, 1, exc.stdout or "", exc.stderr or "")
                proc.stdout = proc.stdout.decode() if isinstance(proc.stdout, bytes) else proc.stdout
            seconds.append(time.monotonic() - started)
            for line in proc.stdout.splitlines():  # -rA's summary: "PASSED tests/x.py::name" (not captured logs)
                word, _, node = line.partition(" ")
                if word in ("PASSED", "FAILED", "ERROR") and node.startswith("tests/"):
                    outcomes[node.split(" - ")[0]][word] += 1
            failed = sum(c["FAILED"] + c["ERROR"] for c in outcomes.values())
            print(
                f"run {run + 1}/{args.runs}: exit {proc.returncode}, {seconds[-1]:.0f} s, failures so far {failed}",
                flush=True,
            )
            if proc.returncode not in (0, 1):  # interrupted, or pytest itself failed
                print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    finally:
        for hog in hogs:
            hog.kill()
    print(
        f"\n{args.runs} runs with {args.busy} busy process(es) beside them; median {statistics.median(seconds):.0f} s "
        f"a run (min {min(seconds):.0f}, max {max(seconds):.0f})"
    )
    for node, counts in sorted(outcomes.items()):
        print(f"  {counts['PASSED']:3d} passed {counts['FAILED']:3d} failed {counts['ERROR']:3d} errors  {node}")
    return 0 if all(not (c["FAILED"] or c["ERROR"]) for c in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
