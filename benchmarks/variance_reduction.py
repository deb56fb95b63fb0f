"""Variance reduction benchmark: antithetic pairs and scrambled Sobol parameters against
plain Monte Carlo, at the same number of paths.

For each method, R independent replicates (seeds ``--seed0 + r``: for Sobol points that is
an independent scrambling, and new shock streams) of ``--paths`` paths each; for every
headline statistic, the variance of its estimate over the replicates. The variance
reduction factor is ``var(plain) / var(method)``; its 95% interval comes from the F
distribution with (R - 1, R - 1) degrees of freedom (the replicates are independent and
the estimates near normal). Also printed: the replicates' spread against the standard
error each run reports (for antithetic pairs these should agree; for Sobol points the
reported one is the i.i.d. formula), the time per run (median and spread), and the
efficiency gain, the factor times plain's time over the method's. Plain Monte Carlo, the
baseline, is measured in the same process.

    python benchmarks/variance_reduction.py                        # base config, 2^16 x 32
    python benchmarks/variance_reduction.py --paths 16384 --replicates 16 --horizon 2030-12
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from scipy.stats import f as f_dist

from mcsim import __version__
from mcsim.api import run
from mcsim.config import load_config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench import device_name, summarize_times  # noqa: E402

METHODS = ("none", "antithetic", "sobol")


def headline(results) -> dict[str, tuple[float, float]]:
    """Headline statistics of a run: name -> (estimate, reported standard error)."""
    layout, T = results.layout, results.grid.num_months
    cum_mean, cum_se = results.mean("cumulative_azure_spend")
    q = results.quantiles("cumulative_azure_spend", (50,))
    h_mean, h_se = results.mean("horizon")
    rep = results.repayment
    net = layout.row("microsoft_net") - layout.rows("horizon").start
    mid = T // 2  # repaid by the middle of the horizon
    return {
        "mean_cumulative_azure_spend": (float(cum_mean[-1]), float(cum_se[-1])),
        "median_cumulative_azure_spend": (float(q.value[-1, 0]), float("nan")),
        "p_not_repaid": (rep.censored, rep.censored_se),
        f"p_repaid_by_{results.grid.label(mid)}": (float(rep.cdf[mid]),
                                                   float(rep.cdf_se[mid])),
        "mean_microsoft_net": (float(h_mean[net]), float(h_se[net])),
    }


def measure(config, method: str, paths: int, replicates: int, seed0: int) -> dict:
    estimates, reported, seconds = [], [], []
    for r in range(replicates):
        cfg = config.with_simulation(paths=paths, seed=seed0 + r, variance_reduction=method)
        t0 = time.perf_counter()
        res = run(cfg, progress=False)
        seconds.append(time.perf_counter() - t0)
        h = headline(res)
        estimates.append([v[0] for v in h.values()])
        reported.append([v[1] for v in h.values()])
    names = list(h)
    est, rep = np.array(estimates), np.array(reported)
    timed = seconds[1:] or seconds  # the first run of a method compiles its kernel
    return {"names": names, "estimates": est.tolist(),
            "variance": est.var(axis=0, ddof=1).tolist(),
            "mean": est.mean(axis=0).tolist(),
            "reported_se_rms": np.sqrt(np.mean(rep**2, axis=0)).tolist(),  # NaN: none
            "seconds": {**summarize_times(timed), "first_call_s": seconds[0]}}


def factor_interval(var_base: float, var_method: float, replicates: int,
                    level: float = 0.95) -> tuple[float, float, float]:
    """Variance ratio with its F interval, both variances from ``replicates`` runs."""
    if var_method > 0:
        ratio = var_base / var_method
    else:  # a statistic constant over the replicates: no factor to speak of
        ratio = float("inf") if var_base > 0 else float("nan")
    df = replicates - 1
    a = (1 - level) / 2
    return ratio, ratio / f_dist.ppf(1 - a, df, df), ratio / f_dist.ppf(a, df, df)


def _strict(value):
    """NaN (a statistic with no reported error) as JSON null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "base.toml"))
    p.add_argument("--paths", type=int, default=65536)
    p.add_argument("--replicates", type=int, default=32)
    p.add_argument("--horizon", help="cut the config's horizon (YYYY-MM)")
    p.add_argument("--seed0", type=int, default=1000)
    p.add_argument("--out", help="JSON path (default benchmarks/results/"
                                 "variance_reduction_<device>.json)")
    args = p.parse_args(argv)
    if args.replicates < 3:
        p.error("--replicates must be at least 3")
    config = load_config(args.config)
    if args.horizon:
        config = config.with_simulation(horizon=args.horizon)
    device = device_name()
    print(f"device: {device} ({jax.local_devices()[0].device_kind}), jax {jax.__version__}, "
          f"mcsim {__version__}")
    print(f"config: {args.config}, {config.grid.num_months} months, {args.paths:,} paths x "
          f"{args.replicates} replicates per method, float32")
    results = {m: measure(config, m, args.paths, args.replicates, args.seed0)
               for m in METHODS}
    base = results["none"]
    names = base["names"]
    factors: dict[str, dict] = {}
    for m in METHODS:
        r = results[m]
        t = r["seconds"]
        print(f"\n{m}: {t['median_s']:.2f} s per run (median; {t['min_s']:.2f}-"
              f"{t['max_s']:.2f}; first call {t['first_call_s']:.2f} s with compilation)")
        factors[m] = {}
        for j, name in enumerate(names):
            vr, lo, hi = factor_interval(base["variance"][j], r["variance"][j],
                                         args.replicates)
            eff = vr * base["seconds"]["median_s"] / r["seconds"]["median_s"]
            sd = np.sqrt(r["variance"][j])
            factors[m][name] = {"factor": vr, "low": lo, "high": hi, "efficiency": eff,
                                "replicate_sd": sd, "reported_se_rms": r["reported_se_rms"][j]}
            reported = r["reported_se_rms"][j]
            se_txt = "" if not (np.isfinite(reported) and reported > 0) else \
                f"; replicate sd / reported se {sd / r['reported_se_rms'][j]:.2f}"
            tag = "baseline" if m == "none" else \
                f"factor {vr:6.2f} [{lo:.2f}, {hi:.2f}], efficiency {eff:5.2f}"
            print(f"  {name:<36} {tag}{se_txt}")
    record = {"device": device, "jax_version": jax.__version__, "mcsim_version": __version__,
              "config": args.config, "months": config.grid.num_months, "paths": args.paths,
              "replicates": args.replicates, "seed0": args.seed0, "methods": results,
              "factors": factors}
    out = Path(args.out or ROOT / "benchmarks" / "results" /
               f"variance_reduction_{device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_strict(record), indent=1, allow_nan=False) + "\n")
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
