"""JAX's 64-bit mode, which mcsim needs and switches on explicitly.

The kernel runs in float32, but every reported sum (running totals, annual sums, the sum
tree) and every deal amount is float64, which JAX creates only with ``jax_enable_x64``.
Importing :mod:`mcsim` changes nothing; the entry points that build device arrays
(:func:`mcsim.simulate`, :func:`mcsim.sensitivity`, :func:`mcsim.reproduce`,
:func:`mcsim.run_sweep`, and the engine's :func:`mcsim.engine.run_batch`) call
:func:`enable_x64` first. The switch is process-wide: afterwards ``jnp.array(1.0)`` is
float64 in the caller's code too (every array of mcsim's kernel names its dtype, so the
kernel does not depend on that default). Call it yourself before using the lower-level
modules (:mod:`mcsim.model`, :mod:`mcsim.engine.kernel`) directly.
"""

from __future__ import annotations


def enable_x64() -> None:
    """Switch on JAX's 64-bit mode (``jax_enable_x64``) for this process; idempotent."""
    import jax

    if not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
