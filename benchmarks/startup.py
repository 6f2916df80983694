"""Start-up cost of light commands, two source trees side by side (e.g. before and after a change).

For each command, each tree: wall seconds of the whole process (median of --reps, runs interleaved
so that machine noise hits both trees alike), and from `python -X importtime` of one run the
seconds of all top-level imports and whether torch was imported at all.

    git worktree add /tmp/before COMMIT
    MEDMNIST_ROOT=../shared/data/medmnist python benchmarks/startup.py --tree before=/tmp/before/src --tree after=src
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

COMMANDS = (
    ["--version"],
    ["--help"],
    ["train", "--help"],
    ["datasets", "list"],
    ["datasets", "info", "breastmnist"],
    ["study", "list"],
)


def run(src: str, argv: list[str], importtime: bool = False) -> tuple[float, str]:
    code = "import sys\nfrom medmnist_lab.cli.main import main\nsys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code, *argv]
    env = {**os.environ, "PYTHONPATH": src}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{src}: {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stderr


def import_seconds(stderr: str) -> float:
    """Cumulative seconds of the top-level imports in `python -X importtime` output."""
    total = 0
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit() and not name.startswith("  "):  # indented: nested imports
                total += int(cumulative)
    return total / 1e6


def imports_torch(stderr: str) -> bool:
    """Whether `python -X importtime` output lists the torch package."""
    return any(
        line.startswith("import time:") and line.split("|")[-1].strip() == "torch" for line in stderr.splitlines()
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", required=True, metavar="LABEL=SRC_DIR")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree)
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, reps {args.reps}")
    head = " | ".join(f"{label}: wall s (median) | {label}: imports s | {label}: torch" for label in trees)
    print(f"| command | {head} |")
    print("|---" * (1 + 3 * len(trees)) + "|")
    for argv in COMMANDS:
        walls: dict[str, list[float]] = {label: [] for label in trees}
        for _ in range(args.reps):
            for label, src in trees.items():
                walls[label].append(run(src, argv)[0])
        cells = []
        for label, src in trees.items():
            stderr = run(src, argv, importtime=True)[1]
            cells += [f"{statistics.median(walls[label]):.2f}", f"{import_seconds(stderr):.2f}"]
            cells.append("yes" if imports_torch(stderr) else "no")
        print(f"| `medmnist-lab {' '.join(argv)}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
