"""Time the fused Pallas month loop (mcsim.engine.fused) against the scan kernel.

For each path count both kernels run the config's full grid on chunks of ``--chunk`` paths
(the [S, chunk] float64 stats of one call must fit in device memory: 553 rows at 204
months are 4.6 GB at 2^20 paths), each call reduced on the device to its per-row sums so
that nothing is copied back but [S] numbers. Printed per size: the median and min..max
wall time over ``--repeats``, the first call (compile), path-steps/s (paths x months /
median) and the fused/scan speed ratio, and the largest relative difference of the two
kernels' row sums (a sanity check; tests/test_fused_kernel.py is the equality test).

The fused kernel targets GPUs (Pallas-Triton). On a CPU backend the script says so and
exits 0, unless ``--interpret`` is given, which runs Pallas' interpret mode at tiny sizes
(a smoke test of this script, not a timing).

    python benchmarks/fused_bench.py --paths 1e6,1e7,1e8 --repeats 3 --out fused.json
    python benchmarks/fused_bench.py --interpret --paths 512 --months 24 --chunk 256
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mcsim.config import load_config
from mcsim.engine.fused import build_fused_kernel
from mcsim.engine.kernel import DTYPES, KernelSpec, build_kernel, kernel_inputs
from mcsim.months import MonthGrid
from mcsim.x64 import enable_x64

ROOT = Path(__file__).resolve().parent.parent
INTERPRET_MAX_PATHS = 4096  # interpret mode runs the grid as an XLA loop: tiny sizes only


def chunked(kernel, chunk: int):
    """jit of one chunk: paths start .. start + chunk - 1, reduced to per-row sums (and
    the event months' sum), so the comparison times the kernels, not a copy to the host."""

    def one(inputs, start):
        paths = start + jnp.arange(chunk, dtype=jnp.uint32)
        out = kernel(inputs, paths)
        events = out.final.repayment_month.sum() + out.final.credit_month.sum()
        return out.stats.sum(axis=1), events, out.first_bad.min()

    return jax.jit(one)


def time_kernel(fn, inputs, calls: int, chunk: int, repeats: int) -> dict:
    """First call (compile + run of one chunk), then ``repeats`` timings of all calls."""
    t0 = time.perf_counter()
    first = fn(inputs, jnp.uint32(0))
    jax.block_until_ready(first)
    first_s = time.perf_counter() - t0
    times, sums = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs = [fn(inputs, jnp.uint32((c * chunk) % 2**32)) for c in range(calls)]
        jax.block_until_ready(outs)
        times.append(time.perf_counter() - t0)
        sums = np.sum([np.asarray(o[0]) for o in outs], axis=0)
    return {"first_call_s": first_s, "median_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times), "all_s": times, "row_sums": sums}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "base.toml"))
    p.add_argument("--paths", default="1e6,1e7", help="comma-separated path counts")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk", type=int, default=2**20, help="paths per kernel call")
    p.add_argument("--block", default="128", help="paths per Pallas program (comma list)")
    p.add_argument("--months", type=int, help="shorter grid (default: the config's)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--interpret", action="store_true",
                   help="Pallas interpret mode (CPU smoke test at tiny sizes)")
    p.add_argument("--skip-scan", action="store_true", help="time the fused kernel only")
    p.add_argument("--budget-s", type=float, default=float("inf"),
                   help="start no size whose estimated time would pass this budget")
    p.add_argument("--out", help="result JSON")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    backend = jax.default_backend()
    if backend != "gpu" and not args.interpret:
        print(f"backend {backend}: the fused kernel targets GPUs (Pallas-Triton); nothing "
              "to time here (use --interpret with tiny --paths for a smoke test)")
        return 0
    sizes = [int(float(x)) for x in args.paths.split(",")]
    blocks = [int(b) for b in args.block.split(",")]
    if args.interpret and max(sizes) > INTERPRET_MAX_PATHS:
        print(f"--interpret runs at most {INTERPRET_MAX_PATHS} paths (got {max(sizes)})")
        return 2
    enable_x64()
    cfg = load_config(args.config)
    grid = MonthGrid(cfg.grid.start, args.months) if args.months else cfg.grid
    spec = KernelSpec.for_config(cfg, args.dtype, grid=grid)
    inputs = kernel_inputs(cfg, grid)
    T = grid.num_months
    device = jax.local_devices()[0]
    print(f"device: {device.platform} {device.device_kind} ({jax.local_device_count()} local)"
          f", jax {jax.__version__}, config {Path(args.config).name}, {T} months, "
          f"dtype {args.dtype}, chunk {args.chunk}, interpret {args.interpret}")
    record = {"device": f"{device.platform}-{device.device_kind}", "months": T,
              "dtype": args.dtype, "chunk": args.chunk, "interpret": args.interpret,
              "runs": []}
    started, failures, per_path_step = time.perf_counter(), 0, None
    for n in sizes:
        chunk = min(args.chunk, n)
        calls = math.ceil(n / chunk)
        paths = calls * chunk
        if per_path_step is not None:  # the last size's seconds per path-step, scaled
            estimate = per_path_step * paths * T * (args.repeats + 1)
            if time.perf_counter() - started + estimate > args.budget_s:
                print(f"{paths:.3g} paths: skipped (estimated {estimate:.0f} s would pass "
                      f"the {args.budget_s:.0f} s budget)")
                continue
        run = {"paths": paths, "calls": calls, "chunk": chunk}
        scan = None
        if not args.skip_scan:
            scan = time_kernel(chunked(build_kernel(spec), chunk), inputs, calls, chunk,
                               args.repeats)
            run["scan"] = {k: v for k, v in scan.items() if k != "row_sums"}
            run["scan"]["path_steps_per_s"] = paths * T / scan["median_s"]
            print(f"{paths:.3g} paths  scan        median {scan['median_s']:.4f} s "
                  f"({scan['min_s']:.4f}..{scan['max_s']:.4f}), first call "
                  f"{scan['first_call_s']:.2f} s, "
                  f"{run['scan']['path_steps_per_s']:.3g} path-steps/s")
        for block in blocks:
            name = f"fused_b{block}"
            try:
                fused = time_kernel(
                    chunked(build_fused_kernel(spec, block=block,
                                               interpret=args.interpret), chunk),
                    inputs, calls, chunk, args.repeats)
            except Exception as e:  # a Triton compile failure is a result to report
                failures += 1
                print(f"{paths:.3g} paths  {name}: FAILED {type(e).__name__}: "
                      f"{str(e)[:2000]}")
                run[name] = {"error": f"{type(e).__name__}: {str(e)[:2000]}"}
                continue
            entry = {k: v for k, v in fused.items() if k != "row_sums"}
            entry["path_steps_per_s"] = paths * T / fused["median_s"]
            line = (f"{paths:.3g} paths  {name:11s} median {fused['median_s']:.4f} s "
                    f"({fused['min_s']:.4f}..{fused['max_s']:.4f}), first call "
                    f"{fused['first_call_s']:.2f} s, {entry['path_steps_per_s']:.3g} "
                    "path-steps/s")
            if scan is not None:
                entry["speedup_vs_scan"] = scan["median_s"] / fused["median_s"]
                a, b = scan["row_sums"], fused["row_sums"]
                ok = np.isfinite(a) & np.isfinite(b) & (a != 0)
                entry["max_rel_diff_row_sums"] = float(
                    np.max(np.abs(b[ok] - a[ok]) / np.abs(a[ok]))) if ok.any() else 0.0
                line += (f", x{entry['speedup_vs_scan']:.2f} vs scan, row sums differ by "
                         f"{entry['max_rel_diff_row_sums']:.2e} (rel)")
            print(line)
            run[name] = entry
            per_path_step = fused["median_s"] / (paths * T)
        if scan is not None:
            per_path_step = max(per_path_step or 0.0, scan["median_s"] / (paths * T))
        record["runs"].append(run)
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1))
        print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
