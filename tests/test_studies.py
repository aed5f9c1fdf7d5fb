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


def load_example(name: str):
    """An example script as a module (its `main` is not run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _SigmaIsT:
    def marginal_std(self, t):
        return t


def test_phi4_noised_score(x64):
    """The drift of a perfect network in the 3D φ⁴ study, `noised_score`
    `−(1 + Σ²H)⁻¹(∇S + ½Σ²∇ΔS)`: exact for the free field (λ = 0, `−A(1 + Σ²A)⁻¹φ`); for
    λ > 0, against the score of `p_0 * N(0, Σ²)` by quadrature on two sites, its error falls
    as Σ⁴ (×16 per halving), that of `−∇S` as Σ²."""
    import jax
    import jax.numpy as jnp

    import sqdiff as sq

    noised_score = load_example("phi4_train_small").noised_score
    free = sq.Phi4(4, 0.2, 0.0, d=2)
    phi = jax.random.normal(jax.random.key(0), (4, 4), jnp.float64)
    A = np.asarray(jax.hessian(free)(phi)).reshape(16, 16)
    exact = -np.linalg.solve(np.eye(16) + 0.3 * A, A @ np.asarray(phi).ravel())
    got = np.asarray(noised_score(free, _SigmaIsT())(np.sqrt(0.3), phi)).ravel()
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5)

    action = sq.Phi4(2, 0.19, 0.9, d=1)
    score = noised_score(action, _SigmaIsT())
    x = np.array([0.7, -0.3])

    def quadrature(sigma, n=401):
        """`E[(y − x)/Σ² | x]` under `p_0(y) N(x − y; Σ²)`: the noised score at x."""
        grid = np.linspace(-9 * sigma, 9 * sigma, n)
        y = np.stack(np.meshgrid(x[0] + grid, x[1] + grid, indexing="ij"), -1).reshape(-1, 2)
        log_w = -np.asarray(jax.vmap(action)(jnp.asarray(y)))
        log_w -= np.sum((y - x) ** 2, axis=1) / (2 * sigma**2)
        w = np.exp(log_w - log_w.max())
        return (w @ (y - x)) / w.sum() / sigma**2

    errors, errors_force = [], []
    for sigma in (0.2, 0.1, 0.05):
        exact = quadrature(sigma)
        errors.append(np.linalg.norm(exact - np.asarray(score(sigma, jnp.asarray(x)))))
        errors_force.append(np.linalg.norm(exact + np.asarray(action.force(jnp.asarray(x)))))
    for ratio in np.array(errors[:-1]) / np.array(errors[1:]):
        assert 12 < ratio < 20, errors
    for ratio in np.array(errors_force[:-1]) / np.array(errors_force[1:]):
        assert 3 < ratio < 5, errors_force
    assert errors[1] < 0.1 * errors_force[1]
