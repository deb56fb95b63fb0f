"""What version 3 costs: the same world run with and without its three additions, in one
process, alternating.

``configs/base.toml`` (version 3: [funding], a discount rate, Microsoft's stake) against the
same config as it was before version 3 (``tests/data/v2/base.toml``, whose numbers the
identity tests pin): the same paths, months and kernel options. Prints the device, the
cores used (CPU time over wall time), the paths and months, each config's first call
(compile included) and its steady time over ``--repeats`` alternating repeats (median and
spread), the ratio of medians, the statistic rows each reduces, the run's host memory for
its accumulators, and XLA's own memory analysis of each compiled chunk kernel (temporary
bytes per path).

    python benchmarks/v3_cost.py                    # 200,000 paths x 204 months, ~3 min
    python benchmarks/v3_cost.py --paths 1e6 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from mcsim import load_config
from mcsim.accumulators import MoneyBins
from mcsim.api import run
from mcsim.cpu_devices import use_cpu_cores
from mcsim.engine import KernelSpec, default_chunk_size, kernel_inputs
from mcsim.engine.chunk import chunk_kernel, no_uniforms, zero_counts
from mcsim.engine.conditioning import no_windows
from mcsim.layout import StatLayout

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"v2 (before)": ROOT / "tests" / "data" / "v2" / "base.toml",
           "v3 (base.toml)": ROOT / "configs" / "base.toml"}


def kernel_temp_bytes(cfg, chunk: int) -> int:
    """XLA's temporary bytes of the compiled chunk kernel for ``chunk`` paths per device."""
    bins, devices = MoneyBins(), tuple(jax.local_devices())
    kernel = chunk_kernel(KernelSpec.for_config(cfg), bins, chunk, devices)
    compiled = kernel.lower(kernel_inputs(cfg), zero_counts(StatLayout.of(cfg), bins, devices),
                            jnp.uint32(0), jnp.int64(chunk), no_uniforms(devices),
                            no_windows(), no_uniforms(devices)).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--paths", type=float, default=2e5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--horizon", help="cut both configs at this month (default: theirs)")
    args = p.parse_args(argv)
    use_cpu_cores()
    paths = int(args.paths)
    configs = {name: load_config(path).with_simulation(paths=paths, seed=1,
                                                       horizon=args.horizon)
               for name, path in CONFIGS.items()}
    device = jax.local_devices()[0]
    print(f"device: {device.platform}:{device.device_kind} x {len(jax.local_devices())}; "
          f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"jax {jax.__version__}")
    months = {c.grid.num_months for c in configs.values()}
    print(f"paths: {paths:,}; months: {', '.join(map(str, sorted(months)))}; float32; "
          f"repeats: {args.repeats} (alternating)")
    first, times, cpu = {}, {n: [] for n in configs}, {n: 0.0 for n in configs}
    rows = {}
    for name, cfg in configs.items():
        t0 = time.perf_counter()
        res = run(cfg, progress=False)
        first[name] = time.perf_counter() - t0
        rows[name] = (res.layout.num_stats, len(res.layout.events),
                      res.accumulator.histogram.nbytes)
    for _ in range(args.repeats):
        for name, cfg in configs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            run(cfg, progress=False)
            times[name].append(time.perf_counter() - t0)
            cpu[name] += time.process_time() - c0
    chunk = default_chunk_size(device=device)
    print(f"{'':16s} {'first call s':>12s} {'median s':>9s} {'min..max s':>13s} "
          f"{'cores':>5s} {'rows':>5s} {'events':>6s} {'histogram MB':>12s} "
          f"{'XLA temp B/path':>15s}")
    for name, cfg in configs.items():
        t = times[name]
        temp = kernel_temp_bytes(cfg, chunk) / chunk
        print(f"{name:16s} {first[name]:12.2f} {statistics.median(t):9.2f} "
              f"{min(t):6.2f}..{max(t):<6.2f} {cpu[name] / sum(t):5.2f} {rows[name][0]:5d} "
              f"{rows[name][1]:6d} {rows[name][2] / 1e6:12.1f} {temp:15.0f}")
    a, b = (statistics.median(times[n]) for n in configs)
    print(f"v3 / v2 steady time: {b / a:.3f} (chunk {chunk:,} paths per device)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
