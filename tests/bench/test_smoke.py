"""Smoke runs of every benchmark (`--quick`): they keep the scripts working; the figures come from the full runs
(BENCHMARKS.md). Each runs the documented command in a subprocess and checks the results file carries the
documented keys as numbers. Nothing here asserts a duration or a performance figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

BENCHES = {
    "concurrent_jobs": ["jobs", "delivered", "delivered_twice", "http_429", "edit_delay_p95_s", "edit_interval_s",
                        "loop_lag_p99_ms", "rss_per_job_kib"],
    "delivery": ["delivery_rss_growth_mib_attach", "delivery_rss_growth_mib_link", "bot_overhead_ms"],
    "startup": ["startup_s"],
    "scale": ["jobs", "delivered", "delivered_twice", "capacity_ratio", "takeover_p95_s", "http_429_outside_takeover",
              "quota_reservations_per_s_postgres", "quota_p99_ms_postgres", "quota_p99_ms_sqlite"],
    "scheduler_memory": ["tracemalloc_growth_after_expiry_kib", "bytes_per_interaction_after_expiry",
                         "windows_after_expiry", "rss_growth_after_expiry_mib"],
}  # fmt: skip
SOAK_KEYS = ["soak_jobs", "soak_lost", "soak_double_charged", "soak_stuck"]


def run_bench(name: str, out: Path, *extra: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick", "--out", str(out), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, f"bench.{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return json.loads(out.read_text())


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", sorted(BENCHES))
def test_quick_bench_writes_its_figures(name: str, tmp_path: Path) -> None:
    figures = run_bench(name, tmp_path / f"{name}.json")
    for key in BENCHES[name]:
        assert isinstance(figures.get(key), int | float), f"{name}: {key} missing or not a number: {figures.get(key)}"
    assert figures["mode"] == "quick"


@pytest.mark.timeout(180)
def test_quick_soak_settles_every_job(tmp_path: Path) -> None:
    """The soak's own verdict on its short run: nothing stuck, no reservation left open, and nothing lost or
    charged twice, nothing delivered twice, across the kill -9 and the database locks."""
    figures = run_bench("soak", tmp_path / "soak.json")
    for key in SOAK_KEYS:
        assert isinstance(figures.get(key), int), f"soak: {key} missing or not a number: {figures.get(key)}"
    assert figures["soak_jobs"] > 0
    assert figures["soak_stuck"] == 0 and figures["soak_orphan_reservations"] == 0, figures["soak_problems"]
    assert figures["soak_double_charged"] == 0, figures["soak_problems"]
    assert figures["soak_lost"] == 0 and figures["soak_delivered_twice"] == 0, figures["soak_problems"]
    assert figures["soak_bot_errors_logged"] == 0
