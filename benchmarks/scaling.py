"""How the engine's time grows with paths and months: a grid of runs and a log-log plot.

    python benchmarks/scaling.py                       # CPU: 1e4 .. 1e7 paths
    python benchmarks/scaling.py --paths 1e6,1e7,1e8   # a GPU

Each point is the median of ``--repeats`` runs after a compiling run of one call's paths.
Writes ``benchmarks/results/scaling_<device>.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax

from mcsim.api import run
from mcsim.config import load_config
from mcsim.engine.plan import default_chunk_size, round_chunk

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench import device_name  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "base.toml"))
    p.add_argument("--paths", default="1e4,1e5,1e6,1e7")
    p.add_argument("--horizons", default="2028-12,2033-12,2040-12",
                   help="last months (the config's start stays)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", help="output stem (default benchmarks/results/scaling_<device>)")
    args = p.parse_args(argv)
    base = load_config(args.config)
    dev = jax.local_devices()[0]
    sizes = [int(float(x)) for x in args.paths.split(",")]
    print(f"device: {dev.platform} {dev.device_kind} x {jax.local_device_count()}", flush=True)
    points = []
    for horizon in args.horizons.split(","):
        cfg0 = base.with_simulation(horizon=horizon)
        months = cfg0.grid.num_months
        for n in sizes:
            cfg = cfg0.with_simulation(paths=n)
            # compile and warm up on one call's worth of paths: the same kernel shape
            calls = round_chunk(default_chunk_size(cfg.grid), n, jax.local_device_count())
            run(cfg.with_simulation(paths=min(n, calls * jax.local_device_count())),
                progress=False)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                run(cfg, progress=False)
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            points.append({"paths": n, "months": months, "median_s": med,
                           "min_s": min(times), "max_s": max(times),
                           "path_steps_per_s": n * months / med})
            print(f"  {n:>12,} paths x {months:>3} months: {med:8.3f} s "
                  f"({n * months / med:.3g} path-steps/s)", flush=True)
    stem = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / \
        f"scaling_{device_name()}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(
        {"device": f"{dev.platform}:{dev.device_kind}", "jax_version": jax.__version__,
         "points": points}, indent=2))
    plot(points, f"{dev.platform}: {dev.device_kind}", stem.with_suffix(".png"))
    print(f"written {stem}.json and .png")
    return 0


def plot(points: list[dict], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(10, 4))
    for months in sorted({p["months"] for p in points}):
        pts = sorted((p for p in points if p["months"] == months), key=lambda p: p["paths"])
        x = [p["paths"] for p in pts]
        ax_t.plot(x, [p["median_s"] for p in pts], "o-", label=f"{months} months")
        ax_r.plot(x, [p["path_steps_per_s"] for p in pts], "o-", label=f"{months} months")
    for ax in (ax_t, ax_r):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("paths")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax_t.set_ylabel("wall time per run, s")
    ax_r.set_ylabel("path-steps per second")
    fig.suptitle(f"mcsim engine scaling ({title})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
