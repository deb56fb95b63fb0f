"""configs/base.toml against the leaked 2024-2025 Azure figures (calibration.md, section 3).

The leaked Azure inference spend is $3.77B for 2024 and $8.67B for Jan-Sep 2025. The base
config's medians must land within 10% of each. With 20,000 paths the median's own 95%
interval (order statistics n/2 -+ 1.96 sqrt(n)/2) is under 2% wide, which the test also
checks, so the 10% band is about the calibration, not Monte Carlo noise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CONFIGS_DIR

from mcsim import load_config, model
from mcsim.draws import ParameterSampler
from mcsim.engine import flows_from_normals, shock_cholesky
from mcsim.rng import shock_normals_reference

N_PATHS = 20_000
LEAKED_2024 = 3.77e9
LEAKED_2025_Q1_Q3 = 8.67e9
CALIBRATION_TOLERANCE = 0.10


@pytest.fixture(scope="module")
def azure_inference():
    cfg = load_config(CONFIGS_DIR / "base.toml")
    months = 21  # 2024-01 .. 2025-09
    theta = ParameterSampler(cfg).draw(0, N_PATHS)
    normals = shock_normals_reference(cfg.simulation.seed, 0, N_PATHS, months)
    chol = shock_cholesky(cfg)
    th = {k: jnp.asarray(v, jnp.float32) for k, v in theta.items()}
    deal = model.deal_terms(cfg.deal, cfg.grid)
    fn = jax.jit(lambda th, d, z: flows_from_normals(th, d, z, chol, months))
    _, flows = fn(th, deal, jnp.asarray(normals, jnp.float32))
    return np.asarray(flows.azure_inference_spend, np.float64)  # [21, N]


def _median_with_interval(x):
    s = np.sort(x)
    n = len(s)
    half = 1.959964 * np.sqrt(n) / 2
    return s[n // 2], s[int(np.floor(n / 2 - half))], s[int(np.ceil(n / 2 + half))]


@pytest.mark.parametrize("months,leaked", [(slice(0, 12), LEAKED_2024),
                                           (slice(12, 21), LEAKED_2025_Q1_Q3)],
                         ids=["2024", "2025-Q1-Q3"])
def test_median_azure_inference_spend_matches_the_leak(azure_inference, months, leaked):
    median, lo, hi = _median_with_interval(azure_inference[months].sum(axis=0))
    assert (hi - lo) / median < 0.02
    assert abs(median / leaked - 1) < CALIBRATION_TOLERANCE, median / 1e9


def test_amendment_repays_around_2027():
    """calibration.md's priors: at 20% of the revenue path, cumulative revenue share passes
    $13B around 2027 (2026-2029). The median repayment month must fall in 2026-2029."""
    from mcsim.api import run

    cfg = load_config(CONFIGS_DIR / "amendment_2026.toml").with_simulation(
        horizon="2031-12", paths=4096)
    median, lo, hi = run(cfg, progress=False).repayment.quantiles[50.0]
    assert median is not None
    assert cfg.grid.index("2026-01") <= lo <= median <= hi <= cfg.grid.index("2029-12")
