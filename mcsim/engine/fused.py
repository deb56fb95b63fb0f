"""A fused month loop: one Pallas kernel that runs every month of a block of paths.

:func:`build_fused_kernel` returns a drop-in for :func:`mcsim.engine.kernel.build_kernel`'s
kernel (same arguments, same :class:`PathStatistics`, same numbers) for specs without
observed flows, recorded flows or replayed latent shocks.

Design
------
The scan kernel (:func:`mcsim.engine.kernel.scan_months`) is a ``lax.scan`` over months
whose carry (every path's state, the calendar-year sums and the year-end levels, [.., n])
goes through device memory each month: XLA fuses each month's step, but not the loop.
Here the loop is inside the kernel:

* outside the Pallas call, per path and once (cheap next to 204 months): the parameter draw
  (``spec.sampler.draw``, exactly as :func:`~mcsim.engine.kernel.build_kernel`) and
  :func:`mcsim.model.prepare`; only the prepared entries the month step reads are passed
  (found by tracing the step once with a dict that records its reads);
* ONE ``pl.pallas_call`` with a grid over blocks of ``block`` paths. Each program loads
  its block's theta into values, builds :func:`mcsim.model.initial_state`, and runs ALL
  months in a ``lax.fori_loop`` whose carry is the state, the current calendar year's flow
  sums and ``first_bad``: on a GPU (Triton) an ``scf.for`` whose carry lives in registers;
* the month step reuses :func:`mcsim.model.month_flows`, :func:`mcsim.model.advance`,
  :func:`mcsim.model.correlate` and :func:`mcsim.model.stocks` unchanged (the model has
  one definition) and :func:`mcsim.engine.kernel.month_shocks` for the shocks, drawn in
  the step from (shock key, path stream, month) by the elementwise uint32 Threefry of
  :mod:`mcsim.rng`: no random numbers are stored;
* deal terms go in as tiny inputs: scalars as [1] arrays (bools as int32), per-month [T]
  term arrays (``features.timeline``) read as ``ref[t]`` in the step (a wrapper gives the
  model's ``term[t]`` a scalar load instead of a gather of a loaded vector);
* what goes to memory: only the rows of the [S, block] output block, each once: the
  cumulative Azure spend row of every month, each annual flow's and each stock's row at
  its year's last month (``pl.when``; the stocks' four float64 ``exp`` run only then, not
  every month as in the scan), the horizon rows, the final state and ``first_bad`` at the
  end. Every dtype is scan_months' (drivers in the kernel dtype, sums in float64).

Pallas-Triton in the installed JAX (0.10.2; ``jax/_src/pallas/triton/lowering.py``)
-----------------------------------------------------------------------------------
* The default GPU backend of ``pl.pallas_call`` is Mosaic GPU
  (``jax_pallas_use_mosaic_gpu`` defaults to True, ``jax/_src/config.py``); Triton is
  chosen by passing ``compiler_params=plt.CompilerParams(...)`` (``pallas_call.py``
  ``gpu_lowering``), as done here.
* Lowerings exist for everything the model uses: ``exp``/``exp2``/``log``/``log1p``/
  ``sqrt`` with float32 and float64 libdevice externs (``__nv_exp``, ``__nv_exp2``, ...;
  the ``*_dispatch_table`` s from line ~697), ``erf_inv`` by a polynomial helper
  (``register_lowering(lax.erf_inv_p)``, line ~1475, ``pallas/utils.py``
  ``erf_inv_lowering_helper``, float32 and float64), ``logistic`` as ``1 / (1 + exp(-x))``
  and ``is_finite`` as ``~isnan & ~isinf`` (``_JAX_FN_MAPPING``, line ~1410), the uint32
  ops of Threefry (``add``, ``xor``, ``or``, ``shift_left``, ``shift_right_logical``,
  line ~1271), ``convert_element_type`` (line ~1740, unsigned-aware casts), ``select_n``,
  ``cond`` (``pl.when``, line ~2864), ``while``/``scan`` as ``scf.for`` when they are
  ``fori_loop`` s (lines ~2668, ~2793), ``custom_jvp_call`` (``log_sigmoid``/``logaddexp``),
  and ``get``/``swap`` with dynamic scalar indices (scalar loads; row stores).
* No in-kernel ``jax.random``: the ``threefry2x32`` primitive / ``random_bits`` have no
  Triton lowering (``lowering.py`` names neither ``threefry`` nor ``random``), and the
  Triton backend has no scratch memory (``NotImplementedError("scratch memory not
  implemented in the Triton backend")``, line ~321). The Threefry of :mod:`mcsim.rng` is
  written as plain ``jnp`` uint32 adds, rotates and xors, which lower
  one to one, and it gives the same bits as ``jax.random``'s.
* Loads and stores must be power-of-two sized (``_check_tensor_size``, line ~290); array
  *refs* need not be. Every store here is one [block] row (``block`` a power of two) at a
  dynamic row of the [S, block] output block, and every term load a scalar, so S (not a
  power of two: 553 rows at 204 months) needs no padding. Lowering to Triton
  IR runs on a machine without a GPU (compute capability falls back to 9.0,
  ``pallas_call_registration.py``), and :func:`triton_ir_check` does it; the test suite
  calls it, so a missing lowering is found on the CPU. Compiling TTIR to PTX needs a GPU.
  A ref store (``swap``) lowers to a load of the old value and a store
  (``_masked_swap_lowering_rule``); the load is unused, so Triton's dead-code elimination
  should drop it (to confirm in the GPU's PTX). In the IR of the version-2 config the
  month loop is one ``scf.for`` with 48 carried [128] tensors (state, year sums,
  first_bad), one ``scf.if`` for the year-end rows, and inside the loop only the scalar
  loads of the 8 per-month deal terms.
* Known numeric differences of the compiled kernel from XLA's (the GPU test compares with
  tolerances there; in interpret mode to 1e-12, bit-identical today): libdevice
  ``exp``/``log`` against XLA's own expansions, Pallas' own ``erf_inv`` polynomial, ``logistic`` as
  ``1 / (1 + exp(-x))``, and float ``min``/``max`` lowered to ``minnumf``/``maxnumf``
  (a NaN operand is dropped, where XLA propagates it: ``min_openai_cash`` of a path with a
  non-finite flow may differ; ``first_bad`` does not, since it reads running sums).

Next step
---------
Reduce in the kernel: instead of writing the [S, n] stats for :mod:`mcsim.engine.chunk` to
bin, each program bins its block's rows into per-block histograms (in registers / shared
memory) and merges them once into the chunk's counts by atomic adds
(``jax.experimental.pallas.triton.atomic_add``, ``_src/pallas/triton/primitives.py``
line ~520), with the sum-tree node of the chunk's totals; memory
traffic then no longer grows with S x n.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from .. import model
from ..layout import ANNUAL_FLOWS, StatLayout
from .kernel import (
    DTYPES,
    KernelInputs,
    KernelSpec,
    PathStatistics,
    event_months,
    fused_unsupported,
    month_shocks,
    pair_streams,
)

ACC = jnp.float64


def _default_interpret() -> bool:
    """Interpret mode unless the default backend is a GPU."""
    return jax.default_backend() != "gpu"


def _check_supported(spec: KernelSpec) -> None:
    reason = fused_unsupported(spec)
    if reason:
        raise ValueError(
            f"the fused kernel does not support {reason}: use "
            "mcsim.engine.kernel.build_kernel (KernelOptions(fused=True) falls back to it "
            "and says so)")


class _PerMonth:
    """A per-month [T] deal term inside the kernel: the model's ``term[t]``
    (:func:`mcsim.model._at`) becomes one scalar load of the term's ref, which Triton
    lowers, where indexing a loaded [T] vector by a dynamic month would be a gather."""

    def __init__(self, ref, as_bool: bool):
        self.ref, self.as_bool = ref, as_bool

    def __getitem__(self, t):
        x = self.ref[t]
        return x != 0 if self.as_bool else x


class _Recorder(dict):
    """theta that records which entries the month step reads."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default


def _deal_leaf(x) -> tuple[jax.Array, bool]:
    """A deal term as a kernel input: [T] stays, a scalar becomes [1] (no 0-d refs); bools
    go in as int32 (the Triton backend's int1 loads are a special case best avoided)."""
    x = jnp.asarray(x)
    as_bool = x.dtype == jnp.bool_
    if as_bool:
        x = x.astype(jnp.int32)
    return (x if x.ndim else x.reshape(1)), as_bool


def _month_step(theta, deal, state, t, key, streams, mirrored, spec: KernelSpec, dtype):
    """One month of scan_months' body, without its stores: (levels before the flows, the
    new state, the flows, the cumulative Azure spend of the month)."""
    feats = spec.features
    levels = functools.partial(model.stocks, state, theta, feats)  # only at year ends
    state, flows = model.month_flows(theta, deal, state, t, feats)
    cum_azure = state.cum_azure_spend
    z = month_shocks(key, streams, t + 1, dtype, mirrored)
    state = model.advance(theta, state, model.correlate(z, spec.cholesky), t, feats)
    return levels, state, flows, cum_azure


def _used_theta(spec: KernelSpec, theta: dict, deal: model.DealTerms) -> list[str]:
    """The prepared theta entries that the initial state and a month step read (traced
    abstractly on one path: nothing is computed)."""
    feats, dtype = spec.features, DTYPES[spec.dtype]
    T = spec.grid.num_months

    def step(th):
        rec = _Recorder(th)
        state = model.initial_state(rec, deal, T, feats)
        levels, state, _, _ = _month_step(
            rec, deal, state, jnp.int32(0), (jnp.uint32(0), jnp.uint32(0)),
            jnp.zeros((1,), jnp.uint32), None, spec, dtype)
        levels()
        step.read = rec.read
        return state.cum_azure_spend

    one = {k: jax.ShapeDtypeStruct((1,), v.dtype) for k, v in theta.items()}
    jax.eval_shape(step, one)
    return sorted(step.read)


@functools.lru_cache(maxsize=64)
def build_fused_kernel(spec: KernelSpec, block: int = 128,
                       interpret: bool | None = None) -> Callable[..., PathStatistics]:
    """The fused kernel of ``spec``: ``kernel(inputs, paths, uniforms=None,
    shock_paths=None, windows=None, latent_shocks=None) -> PathStatistics``, with the same
    results as ``build_kernel(spec)`` (see the module docstring). ``block``: paths per
    program (a power of two; on a GPU one per thread at 4 warps x 32 = 128). ``interpret``:
    Pallas' interpret mode (None: unless the default backend is a GPU).

    Raises ValueError for a spec with ``observed`` flows or ``record_flows`` here, and for
    ``latent_shocks`` at call time; ``windows`` is accepted and ignored, as
    :mod:`mcsim.engine.chunk` passes its empty windows to every kernel."""
    _check_supported(spec)
    if block <= 0 or block & (block - 1):
        raise ValueError(f"block = {block}: expected a power of two (a Triton block shape)")
    dtype = DTYPES[spec.dtype]
    feats = spec.features
    grid = spec.grid
    T = grid.num_months
    layout = StatLayout(grid)
    S, Y = layout.num_stats, layout.num_years
    F = len(ANNUAL_FLOWS)
    horizon_row = layout.rows("horizon").start
    first_month = grid.start % 12  # calendar month (0..11) of t = 0
    sampler = spec.sampler

    def kernel(inputs: KernelInputs, paths, uniforms=None, shock_paths=None,
               windows=None, latent_shocks=None) -> PathStatistics:
        if latent_shocks is not None:
            raise ValueError("the fused kernel does not support latent_shocks (posterior "
                             "forecasts): use mcsim.engine.kernel.build_kernel")
        del windows  # as in build_kernel: read only for a spec with observed flows
        use_interpret = _default_interpret() if interpret is None else interpret
        n = paths.shape[0]
        # parameters exactly as build_kernel draws them, then prepared once per path
        theta = sampler.draw(inputs.args, paths, dtype, uniforms=uniforms,
                             antithetic=spec.antithetic)
        theta = model.prepare(theta, feats)
        own_streams, _ = pair_streams(paths, spec.antithetic)
        streams = (own_streams if shock_paths is None else shock_paths).astype(jnp.uint32)

        deal_leaves, deal_tree = jax.tree.flatten(inputs.deal)
        deal_in = [_deal_leaf(x) for x in deal_leaves]
        names = _used_theta(spec, theta, inputs.deal)

        # the grid needs whole blocks: pad with copies of the last path, dropped after
        pad = -n % block
        num_blocks = (n + pad) // block

        def padded(x):
            return jnp.pad(x, (0, pad), mode="edge") if pad else x

        path_arrays = [padded(theta[k]) for k in names] + [padded(streams)]
        if spec.antithetic:
            path_arrays.append(padded(paths.astype(jnp.uint32)))
        small = [x for x, _ in deal_in] + [jnp.asarray(inputs.shock_key, jnp.uint32)]

        # the final state's structure (which leaves are per path, which constants)
        def final_shapes():
            th = {k: jnp.zeros((block,), theta[k].dtype) for k in theta}
            deal = inputs.deal
            state = model.initial_state(th, deal, T, feats)
            _, state, _, _ = _month_step(th, deal, state, jnp.int32(0),
                                         (jnp.uint32(0), jnp.uint32(0)),
                                         jnp.zeros((block,), jnp.uint32), None, spec, dtype)
            return state

        state_shapes = jax.eval_shape(final_shapes)
        state_leaves, state_tree = jax.tree.flatten(state_shapes)
        per_path = [s.shape == (block,) for s in state_leaves]

        n_theta, n_deal = len(names), len(deal_in)

        def body(*refs):
            theta_refs = refs[:n_theta]
            streams_ref = refs[n_theta]
            k = n_theta + 1
            paths_ref = None
            if spec.antithetic:
                paths_ref, k = refs[k], k + 1
            deal_refs = refs[k:k + n_deal]
            key_ref = refs[k + n_deal]
            stats_ref, first_bad_ref, *state_refs = refs[k + n_deal + 1:]

            th = {name: r[...] for name, r in zip(names, theta_refs, strict=True)}
            deal = jax.tree.unflatten(deal_tree, [
                _PerMonth(r, b) if jnp.ndim(x0) else (r[0] != 0 if b else r[0])
                for r, (_, b), x0 in zip(deal_refs, deal_in, deal_leaves, strict=True)])
            key = (key_ref[0], key_ref[1])
            lane_streams = streams_ref[...]
            mirrored = (paths_ref[...] & jnp.uint32(1)) == 1 if spec.antithetic else None
            state = model.initial_state(th, deal, T, feats)
            never = jnp.full((block,), T, jnp.int32)
            annual = tuple(jnp.zeros((block,), ACC) for _ in ANNUAL_FLOWS)

            def month(t, carry):
                state, annual, first_bad = carry
                levels, state, flows, cum_azure = _month_step(
                    th, deal, state, t, key, lane_streams, mirrored, spec, dtype)
                # scan_months' running-sum check: a NaN or inf never leaves a sum
                first_bad = jnp.where(~model.running_sums_finite(state) & (first_bad == T),
                                      t, first_bad)
                # the year's sums added month by month in calendar order from 0, as the
                # scan adds into its zeroed slot: the same float64 additions
                annual = tuple(a + jnp.broadcast_to(getattr(flows, f), (block,)).astype(ACC)
                               for a, f in zip(annual, ANNUAL_FLOWS, strict=True))
                stats_ref[t, :] = cum_azure
                calendar = t + first_month
                y = jax.lax.div(calendar, jnp.int32(12))
                year_end = (jax.lax.rem(calendar, jnp.int32(12)) == 11) | (t == T - 1)

                @pl.when(year_end)
                def _():
                    for i, a in enumerate(annual):
                        stats_ref[T + i * Y + y, :] = a
                    for i, level in enumerate(levels()):
                        stats_ref[T + (F + i) * Y + y, :] = level.astype(ACC)

                annual = tuple(jnp.where(year_end, jnp.zeros_like(a), a) for a in annual)
                return state, annual, first_bad

            final, _, first_bad = jax.lax.fori_loop(
                jnp.int32(0), jnp.int32(T), month, (state, annual, never))
            # scan_months' horizon totals: the same function
            horizon = model.horizon_totals(final, deal, feats)
            for i, h in enumerate(horizon):
                stats_ref[horizon_row + i, :] = jnp.broadcast_to(h, (block,)).astype(ACC)
            first_bad_ref[...] = first_bad
            for r, leaf, pp in zip(state_refs, jax.tree.leaves(final), per_path,
                                   strict=True):
                if pp:
                    r[...] = leaf
                else:  # a constant of the state (an unused feature's zero): one per block
                    r[0] = leaf

        lanes = pl.BlockSpec((block,), lambda i: (i,))
        in_specs = [lanes] * len(path_arrays) + [
            pl.BlockSpec(x.shape, lambda i: (0,)) for x in small]
        out_shape = [jax.ShapeDtypeStruct((S, n + pad), ACC),
                     jax.ShapeDtypeStruct((n + pad,), jnp.int32)] + [
            jax.ShapeDtypeStruct((n + pad,) if pp else (num_blocks,), s.dtype)
            for s, pp in zip(state_leaves, per_path, strict=True)]
        out_specs = [pl.BlockSpec((S, block), lambda i: (0, i)), lanes] + [
            lanes if pp else pl.BlockSpec((1,), lambda i: (i,)) for pp in per_path]
        outs = pl.pallas_call(
            body, grid=(num_blocks,), in_specs=in_specs, out_specs=out_specs,
            out_shape=out_shape, interpret=use_interpret,
            compiler_params=plt.CompilerParams(num_warps=max(1, min(block // 32, 8)),
                                               num_stages=1),
            name="mcsim_fused_months",
        )(*path_arrays, *small)
        stats, first_bad, *state_out = outs
        final = jax.tree.unflatten(state_tree, [
            x[:n] if pp else x[0] for x, pp in zip(state_out, per_path, strict=True)])
        return PathStatistics(stats[:, :n], final, first_bad[:n],
                              jnp.zeros((0, n), ACC),
                              event_months=event_months(final, spec.events))

    return kernel


def triton_ir_check(spec: KernelSpec, inputs: KernelInputs, n: int = 256,
                    block: int = 128) -> str:
    """Lower the compiled (not interpreted) fused kernel of ``spec`` to the GPU's Triton IR
    and return the StableHLO text holding it. Runs without a GPU (Pallas falls back to
    compute capability 9.0), so every primitive's Triton lowering rule, and the
    power-of-two load/store shapes, are checked on the CPU; compiling to PTX is not."""
    fused = build_fused_kernel(spec, block=block, interpret=False)
    paths = jnp.arange(n, dtype=jnp.uint32)

    def f(inputs, paths):
        out = fused(inputs, paths)
        return out.stats, out.first_bad

    lowered = jax.jit(f).trace(inputs, paths).lower(lowering_platforms=("cuda",))
    return lowered.as_text()


__all__ = ["build_fused_kernel", "triton_ir_check"]
