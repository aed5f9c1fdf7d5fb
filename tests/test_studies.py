"""The study pages' numbers come from the commands printed on them: rerun the cheapest study and
compare with its page (10 s, so in the default run)."""

import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def parse_value(cell: str) -> tuple[float, float]:
    """`1.0622(17)` → (1.0622, 0.0017); `−271.1(1.8)` → (−271.1, 1.8)."""
    m = re.fullmatch(r"\s*([−-]?\d+(?:\.\d+)?)\((\d+(?:\.\d+)?)\)\s*", cell)
    if m is None:
        raise ValueError(f"not a value(error) cell: {cell!r}")
    value, error = m.group(1).replace("−", "-"), m.group(2)
    if "." not in error:
        decimals = len(value.split(".")[1]) if "." in value else 0
        return float(value), int(error) * 10.0**-decimals
    return float(value), float(error)


def study_rows(page: str, marker: str) -> dict[str, list[tuple[float, float]]]:
    """The rows of the table after `<!-- study-table: marker … -->` whose cells are all
    value(error)."""
    text = (ROOT / "docs" / "studies" / page).read_text()
    table = text[text.index(f"<!-- study-table: {marker}") :].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[1:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        try:
            rows[cells[0]] = [parse_value(c) for c in cells[1:]]
        except ValueError:
            continue  # the header, the exact row
    return rows


def test_parse_value():
    assert parse_value("1.0622(17)") == pytest.approx((1.0622, 0.0017))
    assert parse_value("−271.1(1.8)") == pytest.approx((-271.1, 1.8))
    assert parse_value("15.72(2)") == pytest.approx((15.72, 0.02))
    with pytest.raises(ValueError):
        parse_value("−2")


def test_cumulant_study_page_is_reproduced(tmp_path):
    rows = study_rows("cumulants.md", "cumulants")
    out = tmp_path / "c.json"
    cmd = [sys.executable, str(ROOT / "examples" / "cumulant_study.py"), "--samples", "100000"]
    cmd += ["--steps", "1000", "--json", str(out), "--no-langevin"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    res = json.loads(out.read_text())
    exact = np.array([1.0625, -2.0, 16.0, -272.0])
    for key in ("VE", "VP"):
        page = np.array(rows[f"{key}, sqdiff"])
        value, error = np.array(res[key]["kappa"]), np.array(res[key]["error"])
        # the same command and seeds: the page's numbers within their rounding and error bars
        assert np.all(np.abs(value - page[:, 0]) <= page[:, 1]), (key, value, page)
        # and the physics: the exact cumulants within 4σ
        assert np.all(np.abs(value - exact) < 4 * error), (key, value, error)
