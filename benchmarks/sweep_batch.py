"""Sweep batching benchmark: G points in one batched kernel against G runs one by one.

The points differ only in traced numbers (``deal.investment`` here), so
:func:`mcsim.engine.run_batch` computes them in one call per chunk. Prints the device, the
sizes, and the steady-state time of both (median and spread over ``--repeats``, after one
warm-up call each that compiles), and their ratio; the one-by-one runs are the baseline,
measured in the same process. On a CPU the work is the same either way; on a GPU batching
fills the device when one point's chunk would not.

    python benchmarks/sweep_batch.py                    # 4 points x 65,536 paths
    python benchmarks/sweep_batch.py --points 8 --paths 1048576     # on a GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax

from mcsim import __version__, api, with_overrides
from mcsim.config import load_config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench import summarize_times  # noqa: E402


def timed(fn, repeats: int) -> dict:
    fn()  # compiles
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return summarize_times(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "base.toml"))
    p.add_argument("--points", type=int, default=4)
    p.add_argument("--paths", type=int, default=65536)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="JSON path (default: print only)")
    args = p.parse_args(argv)
    base = load_config(args.config).with_simulation(paths=args.paths)
    configs = [with_overrides(base, {"deal.investment": 5e9 + 5e9 * k})
               for k in range(args.points)]
    d = jax.local_devices()[0]
    print(f"device: {d.platform} {d.device_kind} x{len(jax.local_devices())}, jax "
          f"{jax.__version__}, mcsim {__version__}")
    print(f"sizes: {args.points} points x {args.paths:,} paths x {base.grid.num_months} "
          f"months, float32, {args.repeats} repeats")
    alone = timed(lambda: [api.run(c, progress=False) for c in configs], args.repeats)
    batched = timed(lambda: api.run_batch(configs, progress=False), args.repeats)
    for name, t in (("one by one (baseline)", alone), ("batched", batched)):
        print(f"  {name:<22} {t['median_s']:.3f} s median ({t['min_s']:.3f}-{t['max_s']:.3f})")
    ratio = alone["median_s"] / batched["median_s"]
    print(f"  speed-up of batching: {ratio:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "device": f"{d.platform}:{d.device_kind}", "points": args.points,
            "paths": args.paths, "months": base.grid.num_months, "one_by_one": alone,
            "batched": batched, "speedup": ratio, "mcsim_version": __version__}, indent=1)
            + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
