"""The observations' log-likelihood is differentiable (issue 24, item 4): its gradient in
the observed sums and the bias factors' normals is finite and matches central finite
differences, for normal and Student-t errors, with and without bias factors; and the
double-where fix left every value bit-identical to the old formula (kept here verbatim).

Finite differences in float64 with a step of ``1e-5`` times each input's scale: the central
difference's truncation error is ~h^2 |f'''| ~ 1e-10 relative and its rounding error
~eps |f| / h ~ 1e-16 * 1e2 / 1e-5 ~ 1e-9, so ``rtol=1e-6`` (plus ``atol=1e-8`` for
derivatives near 0) leaves three orders of margin yet fails on any wrong derivative.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcsim.engine import conditioning

O, N = 5, 4  # observations, paths
RTOL, ATOL = 1e-6, 1e-8


def _old_bias_factors(windows, z):
    """bias_factors before the fix (verbatim): the reference for bit-identity."""
    code, f = windows["bias_code"][:, None], windows["bias_fields"]
    a, b, c = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    u = jax.scipy.special.ndtr(z)
    split = (b - a) / jnp.where(c > a, c - a, 1.0)
    left = a + jnp.sqrt(u * (c - a) * (b - a))
    right = c - jnp.sqrt(jnp.maximum(1.0 - u, 0.0) * (c - a) * (c - b))
    return jnp.select([code <= 1, code == 2, code == 3],
                      [jnp.broadcast_to(a, z.shape), a * jnp.exp(b * z), a + (b - a) * u],
                      jnp.where(u < split, left, right))


def _old_log_likelihood(observed_sums, windows, bias_z=None):
    """log_likelihood before the fix (verbatim, with the old bias factors)."""
    if bias_z is None:
        pred = observed_sums
    else:
        pred = jnp.where(windows["bias_code"][:, None] == 0, observed_sums,
                         observed_sums * _old_bias_factors(windows, bias_z))
    r = (pred - windows["value"][:, None]) / windows["sd"][:, None]
    r2 = r * r
    dof = windows["dof"][:, None]
    student = -0.5 * (dof + 1.0) * jnp.log1p(r2 / jnp.where(jnp.isinf(dof), 1.0, dof))
    return jnp.sum(jnp.where(jnp.isinf(dof), -0.5 * r2, student), axis=0)


def _windows(errors: str, bias: bool) -> dict:
    """Five observations of values ~100 and sds ~10: ``errors`` normal, student or mixed;
    with ``bias``, one of every bias kind (a triangular one with its mode at its low end,
    where one side of the inverse CDF is never used)."""
    dof = {"normal": [np.inf] * O, "student": [3.0, 5.0, 1.5, 10.0, 4.0],
           "mixed": [np.inf, 4.0, np.inf, 2.5, np.inf]}[errors]
    if bias:
        codes = [0, 1, 2, 3, 4]
        fields = [[1, 0, 0], [1.1, 0, 0], [0.9, 0.2, 0], [0.8, 1.3, 0], [0.7, 0.7, 1.4]]
    else:
        codes, fields = [0] * O, [[1, 0, 0]] * O
    return {"value": jnp.array([100.0, 80.0, 120.0, 95.0, 105.0]),
            "sd": jnp.array([10.0, 5.0, 20.0, 8.0, 12.0]),
            "dof": jnp.array(dof, jnp.float64),
            "bias_code": jnp.array(codes, jnp.int32),
            "bias_fields": jnp.array(fields, jnp.float64)}


def _inputs(seed: int) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    sums = jnp.asarray(rng.normal(100.0, 15.0, (O, N)))
    z = jnp.asarray(rng.normal(0.0, 1.0, (O, N)))
    return sums, z


CASES = [(e, b) for e in ("normal", "student", "mixed") for b in (False, True)]


@pytest.mark.parametrize(("errors", "bias"), CASES)
def test_values_are_bit_identical_to_the_old_formula(errors: str, bias: bool) -> None:
    windows = _windows(errors, bias)
    for seed in range(5):
        sums, z = _inputs(seed)
        # wide sums too: far tails, where the Student-t and normal terms differ most
        for s in (sums, sums * 10.0, -sums):
            bz = z if bias else None
            new = np.asarray(conditioning.log_likelihood(s, windows, bz))
            old = np.asarray(_old_log_likelihood(s, windows, bz))
            assert np.array_equal(new, old), (errors, bias, seed)
            new_jit = np.asarray(jax.jit(conditioning.log_likelihood)(s, windows, bz))
            old_jit = np.asarray(jax.jit(_old_log_likelihood)(s, windows, bz))
            assert np.array_equal(new_jit, old_jit), (errors, bias, seed, "jit")
    if bias:  # the bias factors themselves, at every normal including the tails
        z = jnp.linspace(-8.0, 8.0, 201)[None, :].repeat(O, axis=0)
        assert np.array_equal(np.asarray(conditioning.bias_factors(windows, z)),
                              np.asarray(_old_bias_factors(windows, z)))


def _central_differences(f, x: np.ndarray, scale: float) -> np.ndarray:
    """d f / d x elementwise by central differences of step 1e-5 * scale."""
    h = 1e-5 * scale
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        out[i] = (float(f(jnp.asarray(up))) - float(f(jnp.asarray(down)))) / (2.0 * h)
    return out


@pytest.mark.parametrize(("errors", "bias"), CASES)
def test_gradient_matches_finite_differences(errors: str, bias: bool) -> None:
    windows = _windows(errors, bias)
    sums, z = _inputs(11)
    bz = z if bias else None

    def total(s, zz):
        return jnp.sum(conditioning.log_likelihood(s, windows, zz))

    g_sums, g_z = jax.grad(total, argnums=(0, 1))(sums, bz) if bias else \
        (jax.grad(total)(sums, None), None)
    assert np.isfinite(np.asarray(g_sums)).all()
    assert np.abs(np.asarray(g_sums)).max() > 1e-3  # not trivially zero
    f_sums = jax.jit(lambda s: total(s, bz))
    fd = _central_differences(f_sums, np.asarray(sums), 100.0)
    np.testing.assert_allclose(np.asarray(g_sums), fd, rtol=RTOL, atol=ATOL)
    if bias:
        assert np.isfinite(np.asarray(g_z)).all()
        f_z = jax.jit(lambda zz: total(sums, zz))
        fd_z = _central_differences(f_z, np.asarray(z), 1.0)
        np.testing.assert_allclose(np.asarray(g_z), fd_z, rtol=RTOL, atol=ATOL)
        # no bias (code 0) and a constant one (code 1) do not depend on their normals
        assert np.all(np.asarray(g_z)[:2] == 0.0)


def test_old_formula_gradient_was_nan() -> None:
    """The bug this file guards against: the old formula's gradient is NaN (so the
    finite-gradient checks above are not vacuous)."""
    windows = _windows("mixed", True)
    sums, z = _inputs(3)
    g = jax.grad(lambda s, zz: jnp.sum(_old_log_likelihood(s, windows, zz)),
                 argnums=(0, 1))(sums, z)
    assert np.isnan(np.asarray(g[0])).any() and np.isnan(np.asarray(g[1])).any()
