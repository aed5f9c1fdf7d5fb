"""The main job's physics (slow): on 2D φ⁴ in the symmetric phase (L = 8, κ = 0.21,
λ = 0.022) the diffusion model (reverse SDE) and DM+MAALA reproduce HMC's χ2 and U_L within
4σ (errors of the two ensembles combined; Γ-method, τ_int included)."""

import json

import numpy as np
import pytest

from sqdiff.demo import run_demo


@pytest.mark.slow
def test_dm_and_maala_reproduce_hmc_chi2_and_binder_cumulant(tmp_path):
    run_demo(str(tmp_path / "demo"), quiet=True)  # the README's main job, default settings
    table = json.loads((tmp_path / "demo" / "results.json").read_text())["table"]
    for obs in ("chi2_abs", "U_L", "<|M|>"):
        ref = table["HMC"][obs]
        for method in ("DM", "DM+MAALA"):
            r = table[method][obs]
            sigma = np.hypot(ref["error"], r["error"])
            assert abs(r["value"] - ref["value"]) < 4 * sigma, (obs, method, r, ref)
