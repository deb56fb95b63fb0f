"""Counter-based random numbers (mcsim.rng): Threefry-2x32-20 bits, uniforms and normals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import N_SE
from jax.extend.random import threefry_2x32 as jax_threefry_2x32

from mcsim.rng import (
    STREAM_PARAMETERS,
    STREAM_SHOCKS,
    parameter_uniforms,
    seed_key,
    shock_normals_reference,
    shock_words,
    stream_key,
    threefry2x32,
    uniform52,
    words_to_uniform,
)

# Random123 known-answer vectors for threefry2x32_20: (key0, key1, ctr0, ctr1) -> (out0, out1)
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def _numpy_threefry(key, x0, x1):
    with np.errstate(over="ignore"):
        return threefry2x32(key[0], key[1], np.asarray(x0, np.uint32),
                            np.asarray(x1, np.uint32), np)


def _jax_reference(key, x0, x1):
    """jax.extend.random.threefry_2x32 hashes count = [x0..., x1...] (two halves)."""
    x0 = np.asarray(x0, np.uint32).ravel()
    x1 = np.asarray(x1, np.uint32).ravel()
    out = np.asarray(jax_threefry_2x32((jnp.uint32(key[0]), jnp.uint32(key[1])),
                                       jnp.asarray(np.concatenate([x0, x1]))))
    return out[: x0.size], out[x0.size:]


@pytest.mark.parametrize("key, ctr, expected", KNOWN_ANSWERS)
def test_threefry_known_answers_numpy(key, ctr, expected):
    y0, y1 = _numpy_threefry(key, [ctr[0]], [ctr[1]])
    assert y0.dtype == np.uint32 and y1.dtype == np.uint32
    assert (int(y0[0]), int(y1[0])) == expected


@pytest.mark.parametrize("key, ctr, expected", KNOWN_ANSWERS)
def test_threefry_known_answers_jax_numpy(key, ctr, expected):
    y0, y1 = threefry2x32(key[0], key[1], jnp.asarray([ctr[0]], jnp.uint32),
                          jnp.asarray([ctr[1]], jnp.uint32), jnp)
    assert (int(y0[0]), int(y1[0])) == expected


@pytest.mark.parametrize("key, ctr, expected", KNOWN_ANSWERS)
def test_known_answers_hold_for_jax_extend_too(key, ctr, expected):
    # guards the way _jax_reference lays out the counters
    y0, y1 = _jax_reference(key, [ctr[0]], [ctr[1]])
    assert (int(y0[0]), int(y1[0])) == expected


@pytest.mark.parametrize("key", [(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (0x12345678, 0x9ABCDEF0)])
def test_numpy_jax_and_jax_extend_agree_bit_for_bit(key):
    rng = np.random.default_rng(20240101)
    x0 = rng.integers(0, 2**32, size=4096, dtype=np.uint64).astype(np.uint32)
    x1 = rng.integers(0, 2**32, size=4096, dtype=np.uint64).astype(np.uint32)
    x0[:3] = [0, 0xFFFFFFFF, 1]
    x1[:3] = [0, 0xFFFFFFFF, 0xFFFFFFFF]
    n0, n1 = _numpy_threefry(key, x0, x1)
    j0, j1 = threefry2x32(key[0], key[1], jnp.asarray(x0), jnp.asarray(x1), jnp)
    jit0, jit1 = jax.jit(lambda a, b: threefry2x32(key[0], key[1], a, b, jnp))(
        jnp.asarray(x0), jnp.asarray(x1))
    r0, r1 = _jax_reference(key, x0, x1)
    np.testing.assert_array_equal(n0, r0)
    np.testing.assert_array_equal(n1, r1)
    np.testing.assert_array_equal(np.asarray(j0), r0)
    np.testing.assert_array_equal(np.asarray(j1), r1)
    np.testing.assert_array_equal(np.asarray(jit0), r0)
    np.testing.assert_array_equal(np.asarray(jit1), r1)


def test_shock_words_numpy_and_jax_agree():
    key = stream_key(7, STREAM_SHOCKS)
    paths = np.arange(1000, 1512, dtype=np.uint32)
    with np.errstate(over="ignore"):
        words_np = shock_words(key, paths, np.uint32(5), np)
    words_jax = shock_words(key, jnp.asarray(paths), jnp.uint32(5), jnp)
    assert len(words_np) == len(words_jax) == 5
    for a, b in zip(words_np, words_jax, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    # five different streams, not copies of one another
    assert len({w.tobytes() for w in words_np}) == 5


def test_seed_key_and_stream_keys():
    assert seed_key(0) == (0, 0)
    assert seed_key(2**63 - 1) == (0x7FFFFFFF, 0xFFFFFFFF)
    assert seed_key((3 << 32) | 5) == (3, 5)
    for bad in (-1, 2**63):
        with pytest.raises(ValueError):
            seed_key(bad)
    # the two streams of one seed, and one stream of two seeds, differ
    assert stream_key(1, STREAM_PARAMETERS) != stream_key(1, STREAM_SHOCKS)
    assert stream_key(1, STREAM_PARAMETERS) != stream_key(2, STREAM_PARAMETERS)


def test_parameter_uniforms_chunk_invariance():
    cols = np.array([0, 3, 7, 12, 32, 40])
    full = parameter_uniforms(11, 0, 3000, cols)
    assert full.shape == (3000, 6) and full.dtype == np.float64
    for start, n in [(0, 1), (1, 999), (1234, 1766), (2999, 1)]:
        np.testing.assert_array_equal(parameter_uniforms(11, start, n, cols),
                                      full[start:start + n])
    # a column depends on its parameter index alone, not on which other columns are drawn
    np.testing.assert_array_equal(parameter_uniforms(11, 100, 50, np.array([12])),
                                  full[100:150, 3:4])


def test_parameter_uniforms_depend_on_seed():
    a = parameter_uniforms(1, 0, 100, np.arange(5))
    b = parameter_uniforms(2, 0, 100, np.arange(5))
    assert not np.any(a == b)


def test_shock_normals_chunk_invariance():
    full = shock_normals_reference(3, 0, 400, 4)
    part = shock_normals_reference(3, 150, 100, 4)
    np.testing.assert_array_equal(part, full[:, 150:250])
    assert np.all(full[0] == 0.0)  # nothing is drawn for t = 0
    assert np.all(full[1:] != 0.0)


def test_parameter_uniforms_in_open_unit_interval():
    u = parameter_uniforms(5, 0, 100_000, np.arange(4))
    assert np.all(u > 0.0) and np.all(u < 1.0)
    assert len(np.unique(u)) == u.size  # 52 random bits: no repeats in 4e5 draws


@pytest.mark.parametrize("w0, w1", [(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0),
                                    (0, 0xFFFFFFFF), (0x80000000, 0x80000000)])
def test_uniform52_extreme_words_stay_inside_open_interval(w0, w1):
    # MODEL.md: drawn by inverse CDF from a uniform in (0, 1); u = 1 would give ppf = inf.
    u = uniform52(np.array([w0], np.uint32), np.array([w1], np.uint32))
    assert 0.0 < u[0] < 1.0


@pytest.mark.parametrize("xp, dtype", [(np, np.float64), (np, np.float32),
                                       (jnp, jnp.float32)],
                         ids=["numpy-f64", "numpy-f32", "jax-f32"])
@pytest.mark.parametrize("word", [0, 0xFF, 0x7FFFFFFF, 0xFFFFFEFF, 0xFFFFFF00, 0xFFFFFFFF])
def test_words_to_uniform_extreme_words_stay_inside_open_interval(xp, dtype, word):
    # The device kernel turns these into normals by erf_inv(2u - 1): u == 1 gives +inf.
    u = words_to_uniform(xp.asarray([word], dtype=xp.uint32), xp, dtype)
    assert u.dtype == dtype
    assert 0.0 < float(u[0]) < 1.0


def test_words_to_uniform_float32_is_exact():
    # the docstring's claim: (w >> 9) + 1/2 scaled by 2^-23, exactly, in float32
    words = np.array([0, 1 << 9, 0x7FFFFF00, 0x80000000, 0x80000200, 0xFFFFFE00,
                      0xFFFFFF00, 0xFFFFFFFF], dtype=np.uint32)
    exact = ((words >> 9).astype(np.float64) + 0.5) * 2.0**-23
    got = words_to_uniform(words, np, np.float32).astype(np.float64)
    np.testing.assert_array_equal(got, exact)


def test_uniform_mean_and_variance_within_monte_carlo_error():
    n_paths, k = 50_000, 4
    u = parameter_uniforms(9, 0, n_paths, np.arange(k)).ravel()
    n = u.size
    # U(0,1): mean 1/2, variance 1/12; se(mean) = sqrt(1/12/n);
    # se(sample variance) = sqrt((mu4 - sigma^4)/n) with mu4 = 1/80: sqrt(1/180/n)
    assert abs(u.mean() - 0.5) < N_SE * np.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < N_SE * np.sqrt(1 / 180 / n)
    # and per column, so that no parameter stream is off on its own
    cols = u.reshape(n_paths, k)
    assert np.all(np.abs(cols.mean(axis=0) - 0.5) < N_SE * np.sqrt(1 / 12 / n_paths))


def test_shock_normals_are_standard_normal_and_independent():
    num_paths, num_months = 20_000, 4
    z = shock_normals_reference(2024, 0, num_paths, num_months)
    assert z.shape == (num_months, num_paths, 5)
    x = z[1:].reshape(-1, 5)  # row t = 0 is unused
    n = x.shape[0]
    assert np.all(np.isfinite(x))
    # N(0,1): se(mean) = 1/sqrt(n); se(sample variance) = sqrt(2/n)
    assert np.all(np.abs(x.mean(axis=0)) < N_SE / np.sqrt(n))
    assert np.all(np.abs(x.var(axis=0) - 1.0) < N_SE * np.sqrt(2.0 / n))
    # independence across the 5 shocks: each sample correlation has se ~ 1/sqrt(n)
    corr = np.corrcoef(x, rowvar=False)
    off = corr[~np.eye(5, dtype=bool)]
    assert np.all(np.abs(off) < N_SE / np.sqrt(n))
    # and across months (the same shock of consecutive months)
    for k in range(5):
        r = np.corrcoef(z[1, :, k], z[2, :, k])[0, 1]
        assert abs(r) < N_SE / np.sqrt(num_paths)
