"""Where the engine's time goes: one chunk of paths through cumulative stages of the kernel.

Each stage is compiled on its own and adds one part of the engine to the one before, so
the difference between two stages is the cost of the part added (XLA fuses across parts,
so a difference is that part's cost in context, not in isolation):

1. ``rng``: the five shock normals of every path and month (Threefry-2x32, ``erf_inv``);
2. ``drivers``: + the shocks' correlation and the drivers' step (:func:`mcsim.model.advance`);
3. ``flows``: + revenue and costs (:func:`mcsim.model.operating_flows`);
4. ``waterfall``: + the deal (the rest of :func:`mcsim.model.month_flows`: commitment,
   revenue share and its cap, profit share, running sums);
5. ``statistics``: + every per-path statistic (:func:`mcsim.engine.kernel.scan_months`:
   cumulative Azure spend by month, flows by year, year-end levels, horizon totals);
6. ``reductions``: + histograms, the pairwise sum tree and the month counts (the engine's
   chunk call, :func:`mcsim.engine.chunk.chunk_kernel`), on one device.

Then the whole engine run (``mcsim.api.run``) on every local device, against the chunk
time times the calls, which leaves the host's work (planning, settling, summaries).
Prints each stage's median and min..max over repeats, path-steps per second and the cores
used (process CPU time over wall time).

    python benchmarks/profile_stages.py                  # 32,768 paths per chunk
    python benchmarks/profile_stages.py --paths 1e6      # also the whole run at 10^6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from mcsim import enable_x64, model
from mcsim.accumulators import MoneyBins
from mcsim.api import run
from mcsim.config import load_config
from mcsim.cpu_devices import use_cpu_cores
from mcsim.engine.chunk import chunk_kernel, no_uniforms, zero_counts
from mcsim.engine.kernel import KernelSpec, build_kernel, kernel_inputs, standard_normals
from mcsim.engine.plan import default_chunk_size, default_kernel_options
from mcsim.layout import StatLayout
from mcsim.rng import shock_words

ROOT = Path(__file__).resolve().parent.parent


def timed(f, repeats: int) -> dict:
    """f() after one warm-up call: wall-time median, min, max and CPU time over wall."""
    jax.block_until_ready(f())
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(f())
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "cores": sum(cpus) / sum(walls)}


def stage_functions(cfg, n: int, dtype: str = "float32") -> dict:
    """The cumulative stages 1-5 as jitted functions of no arguments, on n paths."""
    spec = KernelSpec.for_config(cfg, dtype)
    inputs = kernel_inputs(cfg)
    feats, sampler, chol = spec.features, spec.sampler, spec.cholesky
    jd = jnp.float32 if dtype == "float32" else jnp.float64
    T = cfg.grid.num_months
    paths = jnp.arange(n, dtype=jnp.uint32)
    months = jnp.arange(T, dtype=jnp.int32)

    def normals(t):
        return standard_normals(shock_words(inputs.shock_key, paths, t + 1, jnp), jd)

    def kept(state):  # every field, so that XLA drops nothing
        return sum(jnp.sum(x.astype(jnp.float64)) for x in jax.tree.leaves(state))

    @jax.jit
    def rng():
        def body(acc, t):
            return acc + sum(normals(t)), None
        return jax.lax.scan(body, jnp.zeros(n, jd), months)[0].sum()

    def model_loop(part):
        @jax.jit
        def loop():
            theta = model.prepare(sampler.draw(inputs.args, paths, jd), feats)
            state = model.initial_state(theta, inputs.deal, T, feats)

            def body(carry, t):
                state, sink = carry
                if part == "flows":
                    sink = sink + sum(model.operating_flows(theta, state, feats))
                elif part == "waterfall":
                    state, _ = model.month_flows(theta, inputs.deal, state, t, feats)
                state = model.advance(theta, state, model.correlate(normals(t), chol), t,
                                      feats)
                return (state, sink), None

            (final, sink), _ = jax.lax.scan(body, (state, jnp.zeros(n, jd)), months)
            return kept(final) + jnp.sum(sink).astype(jnp.float64)
        return loop

    kernel = build_kernel(spec)

    @jax.jit
    def per_path():
        out = kernel(inputs, paths)
        return jnp.sum(out.stats, axis=1), jnp.sum(out.first_bad), kept(out.final)

    return {"rng": rng, "drivers": model_loop("drivers"), "flows": model_loop("flows"),
            "waterfall": model_loop("waterfall"), "statistics": per_path}


def reductions_function(cfg, n: int, dtype: str = "float32"):
    """Stage 6: the engine's chunk call on one device (histograms, sum tree, counts)."""
    device = jax.local_devices()[:1]
    devices = tuple(device)
    options = default_kernel_options()
    spec = KernelSpec.for_config(cfg, dtype, unroll=options.unroll)
    bins = MoneyBins()
    call = chunk_kernel(spec, bins, n, devices, options)
    inputs = kernel_inputs(cfg)
    none = no_uniforms(devices)
    state = {"counts": zero_counts(StatLayout.of(cfg), bins, devices, options)}

    def once():
        counts, node = call(inputs, state["counts"], jnp.uint32(0), jnp.int64(n), none,
                            None, none)
        state["counts"] = counts  # donated: the next call takes the new one
        return node

    return once


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "base.toml"))
    p.add_argument("--chunk", type=int, help="paths per chunk (default: the engine's)")
    p.add_argument("--paths", type=float, default=0,
                   help="also time the whole engine run at this many paths")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = p.parse_args(argv)
    use_cpu_cores()
    enable_x64()
    cfg = load_config(args.config)
    dev = jax.local_devices()[0]
    n = args.chunk or default_chunk_size(cfg.grid)
    T = cfg.grid.num_months
    print(f"device: {dev.platform} {dev.device_kind} x {jax.local_device_count()} "
          f"(jax {jax.__version__}); stages on one device, {n:,} paths x {T} months, "
          f"{args.dtype}, {args.repeats} repeats", flush=True)
    stages = stage_functions(cfg, n, args.dtype)
    stages["reductions"] = reductions_function(cfg, n, args.dtype)
    previous = 0.0
    results = {}
    print(f"  {'stage':<11} {'median':>9} {'[min .. max]':>20} {'added':>9} "
          f"{'path-steps/s':>13} {'cores':>6}")
    for name, f in stages.items():
        r = timed(f, args.repeats)
        results[name] = r
        added = r["median_s"] - previous
        previous = r["median_s"]
        print(f"  {name:<11} {r['median_s'] * 1e3:7.1f}ms [{r['min_s'] * 1e3:7.1f} .. "
              f"{r['max_s'] * 1e3:7.1f}] {added * 1e3:+8.1f}ms {n * T / r['median_s']:13.3g} "
              f"{r['cores']:6.2f}", flush=True)
    if args.paths:
        total = int(args.paths)
        whole = cfg.with_simulation(paths=total)
        r = timed(lambda: run(whole, dtype=args.dtype, progress=False).num_paths,
                  max(1, args.repeats // 2))
        # the stages ran one device's chunk with every core; a run's devices share them
        device_s = total / n * results["reductions"]["median_s"]
        print(f"  whole run of {total:,} paths on {jax.local_device_count()} device(s): "
              f"{r['median_s']:.2f} s [{r['min_s']:.2f} .. {r['max_s']:.2f}], "
              f"cores {r['cores']:.2f}; its chunks one after another on one device would "
              f"take {device_s:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
