"""Counter-based random numbers: Threefry-2x32 (20 rounds), keyed by (seed, path, ...).

One implementation serves NumPy (host: per-path parameter uniforms) and ``jax.numpy``
(device: monthly shocks), written as plain uint32 array ops so that XLA can fuse the rounds
into the simulation step. Both give the bits of Random123's ``threefry2x32_20`` (and of
``jax.extend.random.threefry_2x32``); a test checks the published known-answer vectors.

Why counters: the random numbers of path ``i`` depend only on the seed and ``i``, never on the
chunk size, the device count or the order in which chunks run.
"""

from __future__ import annotations

import functools

import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA

#: Stream tags: the seed's key is hashed with these to give independent keys per use.
STREAM_PARAMETERS = 0x70617261  # "para"
STREAM_SHOCKS = 0x73686F63  # "shoc"
STREAM_BIAS = 0x62696173  # "bias": observations' bias factors of importance-sampled paths
STREAM_SMC = 0x736D6300  # "smc": tempered SMC (initial particles, moves, resampling)
STREAM_FORECAST = 0x66636173  # "fcas": posterior particles' shocks after the last observation


def _rotl(x, r: int, xp):
    return (x << xp.uint32(r)) | (x >> xp.uint32(32 - r))


def threefry2x32(key0, key1, x0, x1, xp=np):
    """Threefry-2x32-20 of counters ``(x0, x1)`` under key ``(key0, key1)``; all uint32.

    ``xp`` is ``numpy`` or ``jax.numpy``; arrays broadcast. Returns two uint32 arrays.
    """
    u32 = xp.uint32
    k0, k1 = u32(key0), u32(key1)
    k2 = k0 ^ k1 ^ u32(_PARITY)
    ks = (k0, k1, k2)
    x0 = xp.asarray(x0, dtype=xp.uint32) + ks[0]
    x1 = xp.asarray(x1, dtype=xp.uint32) + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r, xp)
            x1 = x1 ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + u32(i + 1)
    return x0, x1


def seed_key(seed: int) -> tuple[int, int]:
    """Split a seed in [0, 2^63) into a Threefry key pair."""
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2^63), got {seed}")
    return (seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF


def stream_key(seed: int, stream: int) -> tuple[int, int]:
    """Key of one named random stream (parameters or shocks) of a seed."""
    k0, k1 = seed_key(seed)
    with np.errstate(over="ignore"):
        a, b = threefry2x32(k0, k1, np.uint32(stream), np.uint32(0))
    return int(a), int(b)


def uniform52(w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """Float64 uniforms in the open interval (0, 1) from two uint32 words: 52 random bits
    plus one half, ``(k + 1/2) / 2^52``, exact in float64 (53-bit significand), so never 0
    or 1."""
    hi = (w0 >> np.uint32(6)).astype(np.float64)  # 26 bits
    lo = (w1 >> np.uint32(6)).astype(np.float64)  # 26 bits
    return (hi * 2.0**26 + lo + 0.5) * 2.0**-52


def parameter_uniforms(seed: int, path_start: int, num_paths: int,
                       parameter_indices: np.ndarray, *, use_jax: bool = True) -> np.ndarray:
    """Uniforms [num_paths, len(parameter_indices)] for paths ``path_start ..``.

    The uniform of (path i, parameter j) is keyed by the counter (i, j) alone, where j is the
    parameter's fixed position in :data:`mcsim.parameters.PARAMETER_NAMES`. The bits are
    the same with ``use_jax`` (compiled, ~50x faster than NumPy's uint32 ops) or without.
    """
    k0, k1 = stream_key(seed, STREAM_PARAMETERS)
    cols = np.asarray(parameter_indices, dtype=np.uint32)
    if use_jax:
        import jax.numpy as jnp

        u = _uniforms_jit(num_paths)(jnp.uint32(k0), jnp.uint32(k1),
                                     jnp.uint32(path_start % 2**32), jnp.asarray(cols))
        return np.array(u, dtype=np.float64)  # a writable copy
    paths = (np.arange(num_paths, dtype=np.uint64) + np.uint64(path_start)).astype(np.uint32)
    with np.errstate(over="ignore"):
        w0, w1 = threefry2x32(k0, k1, paths[:, None], cols[None, :])
    return uniform52(w0, w1)


@functools.lru_cache(maxsize=16)
def _uniforms_jit(num_paths: int):
    import jax
    import jax.numpy as jnp

    def uniforms(k0, k1, path_start, cols):
        paths = path_start + jnp.arange(num_paths, dtype=jnp.uint32)
        w0, w1 = threefry2x32(k0, k1, paths[:, None], cols[None, :], jnp)
        hi = (w0 >> jnp.uint32(6)).astype(jnp.float64)
        lo = (w1 >> jnp.uint32(6)).astype(jnp.float64)
        return (hi * 2.0**26 + lo + 0.5) * 2.0**-52

    return jax.jit(uniforms)


def shock_words(key, paths, month, xp=np):
    """Five uint32 words per path for the shocks of ``month`` (uint32 scalars or arrays).

    Shock k of (path i, month t) comes from counter (i, 4*t + k//2), output word k % 2.
    """
    u32 = xp.uint32
    base = xp.asarray(month, dtype=xp.uint32) * u32(4)
    a0, a1 = threefry2x32(key[0], key[1], paths, base, xp)
    b0, b1 = threefry2x32(key[0], key[1], paths, base + u32(1), xp)
    c0, _ = threefry2x32(key[0], key[1], paths, base + u32(2), xp)
    return a0, a1, b0, b1, c0


def words_to_uniform(w, xp=np, dtype=None):
    """Uniform in the open interval (0, 1) from the top 23 bits of a uint32 word:
    ``(k + 1/2) / 2^23``, exact in float32 (24-bit significand), so never 0 or 1; the
    normals it gives reach about 5.4 standard deviations."""
    dtype = dtype or xp.float32
    return ((w >> xp.uint32(9)).astype(dtype) + dtype(0.5)) * dtype(2.0**-23)


def shock_normals_reference(seed: int, path_start: int, num_paths: int,
                            num_months: int) -> np.ndarray:
    """Standard normals [num_months, num_paths, 5] in float64 (row t=0 is unused: zeros).

    Same bits as the device kernel, transformed by the float64 inverse normal CDF; for
    the reference model and for tests.
    """
    from scipy.special import ndtri

    key = stream_key(seed, STREAM_SHOCKS)
    paths = (np.arange(num_paths, dtype=np.uint64) + np.uint64(path_start)).astype(np.uint32)
    out = np.zeros((num_months, num_paths, 5))
    with np.errstate(over="ignore"):
        for t in range(1, num_months):
            words = shock_words(key, paths, np.uint32(t), np)
            for k, w in enumerate(words):
                out[t, :, k] = ndtri(words_to_uniform(w, np, np.float64))
    return out
