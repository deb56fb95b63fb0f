"""The fused Pallas month loop (:mod:`mcsim.engine.fused`) against the scan kernel.

On the CPU the fused kernel runs in Pallas' interpret mode: the same jnp operations as
``scan_months``, in the same order, but compiled by XLA as another program (a grid loop
around a fori_loop, against nested scans). They are bit-identical today (every stat, the
whole final state), but nothing promises it: XLA fuses the two programs differently and
may contract a multiply and an add into one FMA in one and not the other (with an earlier
version of the scan, one calendar-year row of the version-2 config, the reverse revenue
share, differed by 1 ulp of float64, 3.5e-16 relative). So event months and ``first_bad``
are asserted exactly, and the stats and the final state to 1e-12 relative: far below any
real difference, which would show at float32's 1e-7 (the drivers are float32).

``MCSIM_FUSED_INTERPRET=0`` (benchmarks/gpu_check.sh, on a GPU) runs the compiled Triton
kernel instead. Its float32 transcendentals are libdevice's, not XLA's (and its float
division, erf_inv polynomial and logistic differ), so the float32 drivers move by a few
ulp a month: there the stats are compared to 1e-4 of each row's scale and the event months
of at most 1% of the paths (knife-edge ones) may move.

The Triton lowering itself is checked on the CPU too: Pallas lowers to Triton IR without a
GPU, so every primitive of the month step must have a Triton rule.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CONFIGS_DIR

from mcsim.config import load_config
from mcsim.engine.conditioning import no_windows
from mcsim.engine.fused import build_fused_kernel, triton_ir_check
from mcsim.engine.kernel import KernelSpec, build_kernel, kernel_inputs
from mcsim.months import MonthGrid

INTERPRET = os.environ.get("MCSIM_FUSED_INTERPRET", "1") != "0"
MONTHS = 30  # two and a half calendar years: year ends inside the run and at its end
EVENTS = ("repayment_month", "credit_month", "cap_month", "commit_month")


#: the fused loop runs versions 1 and 2 (version 3's funding, present values and equity
#: fall back to the scan, tests/test_events_table.py): "base" is base.toml as it was before
#: version 3, every version-2 mechanism on
V2_BASE = Path(__file__).resolve().parent / "data" / "v2" / "base.toml"


def _setup(name: str, months: int = MONTHS):
    cfg = load_config(V2_BASE if name == "base" else CONFIGS_DIR / f"{name}.toml")
    grid = MonthGrid(cfg.grid.start, months)
    return KernelSpec.for_config(cfg, grid=grid), kernel_inputs(cfg, grid)


def _both(spec, inputs, n, **kw):
    paths = jnp.arange(n, dtype=jnp.uint32) + jnp.uint32(1000)
    ref = jax.jit(build_kernel(spec))(inputs, paths, **kw)
    out = jax.jit(build_fused_kernel(spec, interpret=INTERPRET))(inputs, paths, **kw)
    return jax.device_get(ref), jax.device_get(out)


def _assert_same(ref, out, months: int):
    assert out.stats.shape == ref.stats.shape and out.stats.dtype == ref.stats.dtype
    a, b = np.asarray(ref.stats), np.asarray(out.stats)
    if INTERPRET:
        np.testing.assert_array_equal(out.first_bad, ref.first_bad)
        for name in EVENTS:
            np.testing.assert_array_equal(getattr(out.final, name),
                                          getattr(ref.final, name), err_msg=name)
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=0.0)
        # the whole final state, leaf by leaf (float32 drivers and float64 sums)
        for x, y in zip(jax.tree.leaves(ref.final), jax.tree.leaves(out.final), strict=True):
            assert np.shape(x) == np.shape(y) and np.asarray(x).dtype == np.asarray(y).dtype
            np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-12, atol=0.0)
    else:
        n = a.shape[1]
        for name in EVENTS:
            moved = np.sum(np.asarray(getattr(out.final, name))
                           != np.asarray(getattr(ref.final, name)))
            assert moved <= max(1, n // 100), (name, moved)
        assert np.sum(out.first_bad != ref.first_bad) <= max(1, n // 100)
        # relative to each row's largest value: profits cross zero, where a relative
        # tolerance per value would be meaningless
        good = (ref.first_bad == months) & (out.first_bad == months)  # finite paths
        a, b = a[:, good], b[:, good]
        scale = np.max(np.abs(a), axis=1, keepdims=True)
        np.testing.assert_array_less(np.abs(b - a),
                                     np.broadcast_to(1e-4 * scale + 1e-300, a.shape))


@pytest.mark.parametrize("name,antithetic", [("base", False),
                                             ("v1_base", True)])
def test_fused_matches_scan(name, antithetic):
    """Version 2 (deal timeline, commitment, reverse share, markup and intensity forms)
    as chunk.py calls the kernel; version 1 with antithetic pairs (mirrored shocks) and
    given shock streams. 200 paths: not a multiple of the 128-path block (the last block
    is padded)."""
    spec, inputs = _setup(name)
    spec = spec._replace(antithetic=antithetic)
    n = 200
    kw = {"windows": no_windows()} if not antithetic else \
        {"shock_paths": (jnp.arange(n, dtype=jnp.uint32)[::-1] * jnp.uint32(7))}
    ref, out = _both(spec, inputs, n, **kw)
    _assert_same(ref, out, MONTHS)


def test_unsupported_specs_raise():
    spec, inputs = _setup("v1_base", months=12)
    with pytest.raises(ValueError, match="recorded flows"):
        build_fused_kernel(spec._replace(record_flows=True))
    with pytest.raises(ValueError, match="observations"):
        build_fused_kernel(spec._replace(observed=(("revenue",),)))
    with pytest.raises(ValueError, match="power of two"):
        build_fused_kernel(spec, block=96)
    paths = jnp.arange(8, dtype=jnp.uint32)
    with pytest.raises(ValueError, match="latent_shocks"):
        build_fused_kernel(spec)(inputs, paths, latent_shocks=jnp.zeros((2, 8, 5)))


@pytest.mark.parametrize("name,antithetic", [("base", False),
                                             ("v1_base", True)])
def test_fused_lowers_to_triton_ir(name, antithetic):
    """Every primitive of the month step has a Pallas-Triton lowering rule and every load
    and store is power-of-two sized (Triton IR is built on the CPU; PTX needs a GPU)."""
    spec, inputs = _setup(name, months=14)
    spec = spec._replace(antithetic=antithetic)
    text = triton_ir_check(spec, inputs, n=256)
    assert "xla.gpu.triton" in text


def test_engine_option_runs_the_fused_kernel_with_the_same_results():
    """``KernelOptions(fused=True)`` through the engine (chunks, histograms, sum tree): the
    same quantiles, means and month counts as the scan (interpret mode on the CPU, where
    the fused loop is bit-identical to the scan; on a GPU, within the tolerances above)."""

    from mcsim.api import run
    from mcsim.engine.plan import KernelOptions

    config = load_config(V2_BASE).with_simulation(horizon="2024-09", paths=768)
    scan = run(config, progress=False, chunk_size=256)
    fused = run(config, progress=False, chunk_size=256, options=KernelOptions(fused=True))
    assert fused.info.options.fused and not scan.info.options.fused
    a, b = scan.accumulator, fused.accumulator
    np.testing.assert_array_equal(b.histogram, a.histogram)
    for name in ("event_counts", "nonfinite_months"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name))
    np.testing.assert_allclose(b.moments.mean, a.moments.mean, rtol=1e-12)
