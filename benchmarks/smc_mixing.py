"""SMC mixing benchmark (issue 24): effective paths per CPU-second of the preconditioned
move (the default: 16 runs, the mixing threshold, the default cap of moves per step) against
pCN as it was the default before (4 runs, 10 moves per step), on the same config, total
particles and machine, in one alternated run (seed 1: pCN then the default, seed 2: pCN
then the default, ...). ``--also-cap 20`` adds the default with another cap (stop 29's 20).

For each of ``--seeds`` seeds and each setting, one SMC posterior (all its runs) is timed
(wall and process CPU seconds; the compile is done first, once per setting, by a warm-up
posterior of the same sizes that is not counted). Its statistics are every drawn parameter
and bias factor and every observation's model value (the particles' means); each
statistic's design
effect is the spread-of-runs variance of its pooled mean over sigma^2 / total
(:func:`mcsim.posterior.design_effects`), and the posterior's effective paths are the total
over the mean design effect (:func:`mcsim.posterior.effective_paths`, the same formula as
``PosteriorResults.ess``, here on the posterior's own statistics rather than the forecast's,
so no forecast is run). Printed: device, cores, sizes; per setting the median and min..max
over seeds of wall time, CPU time, effective paths, effective fraction, effective paths per
CPU-second; the spread of the reported errors across seeds (each statistic's max/min of its
reported error over the seeds, the median over statistics); each setting's effective
paths pooled over the seeds (every seed's runs together, :func:`pooled_over_seeds`: with 4
seeds pCN's design effects have 15 degrees of freedom, not 3); the ratios new / pCN, of the
medians and of the pooled figures.

    python benchmarks/smc_mixing.py                       # observed.toml, 16,384 particles
    python benchmarks/smc_mixing.py --total 65536         # the defaults' size (slow on CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import mcsim  # noqa: E402
from mcsim.config import ConditioningConfig  # noqa: E402
from mcsim.engine import smc  # noqa: E402
from mcsim.posterior import (  # noqa: E402
    design_effects,
    effective_paths,
    run_draws,
    spread_error,
)

_DEFAULT = ConditioningConfig()
#: The settings: (label, runs, moves cap, move, mixing threshold). The particles per run are
#: the total over the runs, so all cost the same particles. The first is the baseline.
SETTINGS = (("pcn (before)", 4, 10, "pcn", 0.0),
            ("preconditioned (default)", _DEFAULT.runs, _DEFAULT.moves, _DEFAULT.move,
             _DEFAULT.mixing_threshold))


def statistics_of(config, posterior) -> tuple[np.ndarray, list[np.ndarray]]:
    """The pooled variance [S] and each run's mean [S] of every drawn parameter, bias
    factor and observation's model value."""
    draws = run_draws(config, posterior, "z")
    per_run = [np.concatenate([np.array([d[k].mean() for k in d]),
                               r.predicted.mean(axis=1)])
               for d, r in zip(draws, posterior.runs, strict=True)]
    pooled = np.concatenate([np.stack([np.concatenate([d[k] for d in draws])
                                       for k in draws[0]]),
                             np.concatenate([r.predicted for r in posterior.runs], axis=1)])
    return pooled.var(axis=1), per_run


def measure(config, label: str) -> dict:
    c0, t0 = time.process_time(), time.perf_counter()
    post = smc.smc_posterior(config)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    var, per_run = statistics_of(config, post)
    total = sum(r.z.shape[0] for r in post.runs)
    ess = effective_paths(var, per_run, total)
    deff = design_effects(var, per_run, total)
    se = spread_error(per_run)  # each statistic's reported error (sd of runs / sqrt R)
    moves = [st.moves for r in post.runs for st in r.steps]
    mixing = [r.steps[-1].mixing for r in post.runs]
    return {"setting": label, "wall_s": wall, "cpu_s": cpu, "ess": ess,
            "fraction": ess / total, "ess_per_cpu_s": ess / cpu,
            "evaluations": sum(r.evaluations for r in post.runs),
            "mean_moves_per_step": float(np.mean(moves)),
            "last_step_mixing_median": float(np.median(mixing)),
            "log_evidence": float(np.mean([r.log_evidence for r in post.runs])),
            "deff_range": [float(np.nanmin(deff)), float(np.nanmax(deff))],
            "se": se.tolist(), "total": total, "variance": var.tolist(),
            "run_means": [m.tolist() for m in per_run]}


def pooled_over_seeds(mine: list[dict]) -> float:
    """One posterior's effective paths from the runs of every seed together: the seeds'
    posteriors are independent draws of the same procedure, so their runs' means are
    R x seeds independent runs and each statistic's design effect (the spread-of-runs
    variance over sigma^2 / particles of one run, :func:`mcsim.posterior.design_effects`)
    has R x seeds - 1 degrees of freedom instead of R - 1 (3 for pCN's 4 runs: a
    per-seed ESS off by a factor of ~2 either way)."""
    var = np.mean([r["variance"] for r in mine], axis=0)
    run_means = [np.array(m) for r in mine for m in r["run_means"]]
    total = mine[0]["total"]
    return effective_paths(var, run_means, total * len(mine)) / len(mine)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.4g} ({min(values):.4g} .. {max(values):.4g})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "observed.toml"))
    ap.add_argument("--total", type=int, default=16384,
                    help="particles per posterior, all runs together (divisible by 16)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--json", default=None, help="also write the measurements here")
    ap.add_argument("--also-cap", type=int, default=None,
                    help="also the default setting with this cap of moves per step")
    args = ap.parse_args()
    settings = SETTINGS
    if args.also_cap is not None:
        _, runs, _, move, threshold = SETTINGS[1]
        settings += ((f"preconditioned, cap {args.also_cap}", runs, args.also_cap, move,
                      threshold),)
    base = mcsim.load_config(args.config)
    configs = {}
    for label, runs, moves, move, threshold in settings:
        configs[label] = lambda seed, r=runs, m=moves, mv=move, th=threshold: \
            mcsim.with_overrides(base, {
                "conditioning.particles": args.total // r, "conditioning.runs": r,
                "conditioning.moves": m, "conditioning.move": mv,
                "conditioning.mixing_threshold": th, "conditioning.seed": seed})
    d = jax.local_devices()[0]
    print(f"device: {d.platform} {d.device_kind} x {jax.local_device_count()}; "
          f"cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}")
    print(f"config: {args.config}; latent dimension "
          f"{smc.latent_layout(base).dimension}; {args.total:,} particles per posterior; "
          f"{args.seeds} seeds, settings alternated")
    for label, runs, moves, move, threshold in settings:
        print(f"  {label}: {runs} runs x {args.total // runs:,} particles, move {move}, "
              f"at most {moves} moves per step, mixing threshold {threshold}")
    # the compile, not counted: a whole posterior of each setting at another seed (its
    # runs move together, so the compiled shapes are those of all its runs)
    for label, *_ in settings:
        t0 = time.perf_counter()
        smc.smc_posterior(configs[label](999))
        print(f"  warm-up {label}: {time.perf_counter() - t0:.1f} s (with compile)")
    rows = []
    for seed in range(1, args.seeds + 1):
        for label, *_ in settings:
            row = measure(configs[label](seed), label)
            row["seed"] = seed
            rows.append(row)
            print(f"  seed {seed} {label}: wall {row['wall_s']:.1f} s, cpu {row['cpu_s']:.1f} s, "
                  f"effective paths {row['ess']:,.0f} ({row['fraction']:.1%}), "
                  f"{row['ess_per_cpu_s']:.1f} per cpu-s, {row['mean_moves_per_step']:.1f} "
                  f"moves/step, last-step mixing {row['last_step_mixing_median']:.2f}, "
                  f"log evidence {row['log_evidence']:.3f}", flush=True)
    print("\nsummary: median (min .. max) over seeds")
    summary = {}
    for label, *_ in settings:
        mine = [r for r in rows if r["setting"] == label]
        se = np.array([r["se"] for r in mine])  # [seeds, statistics]
        ratio = np.nanmax(se, axis=0) / np.nanmin(se, axis=0)
        summary[label] = {k: statistics.median([r[k] for r in mine])
                          for k in ("wall_s", "cpu_s", "ess", "fraction", "ess_per_cpu_s")}
        pooled = pooled_over_seeds(mine)
        summary[label].update(pooled_ess=pooled, pooled_ess_per_cpu_s=pooled / statistics.median(
            [r["cpu_s"] for r in mine]), runs_pooled=sum(len(r["run_means"]) for r in mine))
        print(f"  {label}:")
        for key, name in (("wall_s", "wall time, s"), ("cpu_s", "CPU time, s"),
                          ("ess", "effective paths"), ("fraction", "effective fraction"),
                          ("ess_per_cpu_s", "effective paths per CPU-second"),
                          ("mean_moves_per_step", "moves per step")):
            print(f"    {name}: {spread([r[key] for r in mine])}")
        print(f"    reported errors across seeds, max/min per statistic: median "
              f"{np.nanmedian(ratio):.2f}, worst {np.nanmax(ratio):.2f}")
        print(f"    design effects of the statistics (seed 1): "
              f"{mine[0]['deff_range'][0]:.1f} .. {mine[0]['deff_range'][1]:.1f}")
        s = summary[label]
        print(f"    pooled over the seeds ({s['runs_pooled']} runs): effective paths "
              f"{s['pooled_ess']:,.0f} per posterior, {s['pooled_ess_per_cpu_s']:.1f} per "
              f"CPU-second (at the median CPU time)")
    a = summary[settings[0][0]]
    print()
    for label, *_ in settings[1:]:
        b = summary[label]
        gain = b["ess_per_cpu_s"] / a["ess_per_cpu_s"]
        pooled_gain = b["pooled_ess_per_cpu_s"] / a["pooled_ess_per_cpu_s"]
        print(f"{label} / pCN: effective paths per CPU-second x{gain:.1f} (medians over "
              f"seeds), x{pooled_gain:.1f} (pooled over seeds) (goal >= 10); effective "
              f"fraction {b['fraction']:.1%} (goal >= 25%); wall time "
              f"x{b['wall_s'] / a['wall_s']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
