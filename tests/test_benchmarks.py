"""The prepared GPU run (benchmarks/gpu_rows.sh) at toy size, on the CPU: every row runs to the
end and lands in the summary, so that a session lent a device spends its minutes measuring."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_rows_script_runs_every_row_at_smoke_size(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    run = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_rows.sh"), "--smoke"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = (tmp_path / "summary.txt").read_text()
    for row in ("flow32", "dm32", "u1", "sde"):
        assert f"## {row}: ok" in summary, summary
    assert summary.count("DM+MAALA {") == 1 and summary.count("IMH {") == 1
    assert "--- HMC + instanton moves" in summary
    assert "chi_t" in summary and "em 30" in summary
    assert not (tmp_path / "u1-work").exists()  # the row's scratch files are removed
