"""Time one chunk of the engine's kernel under several layouts (KernelOptions).

For each (unroll, hist_copies) it prints the compile time and the median and spread of the
time per call, and (with ``--breakdown``) the same chunk without the histogram and the
bare model scan, so that a device's bottleneck shows in one table. The fastest layout is
written to ``--best`` as JSON for ``bench.py --unroll U --hist-copies K``.

    python benchmarks/kernel_variants.py --chunk 524288 --variants 1x1,1x32,6x32,12x32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from mcsim.accumulators import MoneyBins
from mcsim.config import load_config
from mcsim.engine import KernelOptions, KernelSpec, kernel_inputs
from mcsim.engine.chunk import chunk_kernel, no_uniforms, zero_counts
from mcsim.engine.conditioning import no_windows
from mcsim.layout import StatLayout

ROOT = Path(__file__).resolve().parent.parent


def time_variant(cfg, chunk: int, options: KernelOptions, repeats: int) -> dict:
    grid, bins, devices = cfg.grid, MoneyBins(), tuple(jax.local_devices())
    kernel = chunk_kernel(KernelSpec.for_config(cfg, unroll=options.unroll), bins, chunk,
                          devices, options)
    inputs = kernel_inputs(cfg)
    counts = zero_counts(StatLayout.of(cfg, grid), bins, devices, options)
    t0 = time.perf_counter()
    extra = (no_uniforms(devices), no_windows(), no_uniforms(devices))  # no latent shocks
    counts, node = kernel(inputs, counts, jnp.uint32(0), jnp.int64(chunk), *extra)
    jax.block_until_ready(node)
    first = time.perf_counter() - t0
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        counts, node = kernel(inputs, counts, jnp.uint32((i + 1) * chunk),
                              jnp.int64(chunk), *extra)
        jax.block_until_ready(node)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"unroll": options.unroll, "hist_copies": options.hist_copies,
            "first_call_s": first, "median_s": med, "min_s": min(times), "max_s": max(times),
            "path_steps_per_s": chunk * grid.num_months / med}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "base.toml"))
    p.add_argument("--chunk", type=int, default=32768, help="paths per call")
    p.add_argument("--variants", default="1x1,2x1",
                   help="comma-separated UNROLLxCOPIES layouts")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--best", help="write the fastest layout here (JSON)")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    dev = jax.local_devices()[0]
    print(f"device: {dev.platform} {dev.device_kind}; chunk {args.chunk:,} paths x "
          f"{cfg.grid.num_months} months; {args.repeats} repeats", flush=True)
    print(f"{'unroll':>6} {'copies':>6} {'first s':>8} {'median s':>9} {'min..max s':>16} "
          f"{'path-steps/s':>13}", flush=True)
    rows = []
    for v in args.variants.split(","):
        u, k = (int(x) for x in v.lower().split("x"))
        r = time_variant(cfg, args.chunk, KernelOptions(u, k), args.repeats)
        rows.append(r)
        print(f"{u:>6} {k:>6} {r['first_call_s']:>8.2f} {r['median_s']:>9.4f} "
              f"{r['min_s']:>7.4f}..{r['max_s']:<7.4f} {r['path_steps_per_s']:>13.3g}",
              flush=True)
    best = min(rows, key=lambda r: r["median_s"])
    print(f"fastest: unroll {best['unroll']}, hist_copies {best['hist_copies']}")
    if args.best:
        Path(args.best).write_text(json.dumps({"device": f"{dev.platform}:{dev.device_kind}",
                                               "chunk": args.chunk, "best": best,
                                               "variants": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
