"""Bad input sweep: runs `tests/test_bad_input_sweep.py` (hostile prompts, attachments, stale clients, replies to
deleted messages, foreign and pre-restart button presses, all through the Discord double) and writes how many
inputs were tried and how many made the bot crash (an ERROR log or traceback, or no answer at all).

    .venv/bin/python bench/bad_inputs.py      # writes bench/results/bad_inputs.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import environment, print_figures, write_results  # noqa: E402

SWEEP = "tests/test_bad_input_sweep.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same sweep (it is short already)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        figures_file = Path(tmp) / "bad_inputs.json"
        env = {**os.environ, "BENCH_BAD_INPUTS_OUT": str(figures_file)}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", SWEEP, "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        print(done.stdout[-4000:])
        if not figures_file.exists():
            print(done.stderr[-4000:], file=sys.stderr)
            return 1
        figures = json.loads(figures_file.read_text())
    figures.update({"sweep_passed": done.returncode == 0, "mode": "quick" if args.quick else "full", **environment()})
    print_figures("bad input sweep:", figures)
    print(f"wrote {write_results('bad_inputs', figures, args.out)}")
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
