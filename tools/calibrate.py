"""Facts vs model and the long-run figures of a config: the calibration check, printed.

    python tools/calibrate.py configs/base.toml [--paths 20000]

Prints each fact of :data:`mcsim.facts.FACTS` inside the run (value, source, the model's
p5/p25/p50/p75/p95, the fact's percentile; firm facts must lie in [25, 75], the others in
[5, 95]) and the long-run plausibility figures that ``tests/test_calibration.py`` checks
(their bounds are stated in the config's [calibration] comments).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import mcsim
from mcsim.facts import facts_vs_model


def long_run(results) -> dict[str, float]:
    """The long-run figures: 2030 revenue (median, p95), 2040 gross margin median, the
    lowest median annual Azure spend after its peak over that peak, deepest loss p95."""
    years = results.grid.year_labels()
    out = {}
    q = results.quantiles("revenue", (50, 95))
    rev = {y: q.value[i] for i, y in enumerate(years)}
    if "2030" in rev:
        out["revenue 2030 median $B"] = rev["2030"][0] / 1e9
        out["revenue 2030 p95 $B"] = rev["2030"][1] / 1e9
    inf = results.quantiles("inference_spend", (50,)).value[:, 0]
    med_rev = q.value[:, 0]
    if "2040" in rev:
        i = years.index("2040")
        out["gross margin 2040 (1 - median I / median V)"] = 1 - inf[i] / med_rev[i]
    az = results.quantiles("azure_spend", (50,)).value[:, 0]
    full = [i for i, y in enumerate(years) if "(" not in y]
    peak = int(np.argmax(az[full]))
    out["Azure spend: min median after peak / peak"] = float(
        min(az[full][peak:]) / az[full][peak])
    out["Azure spend: peak year"] = float(years[full[peak]][:4])
    h = results.quantiles("horizon", (50, 95))
    k = results.layout.row("deepest_cumulative_loss") - results.layout.rows("horizon").start
    out["deepest cumulative loss p95 $B"] = h.value[k, 1] / 1e9
    out["deepest cumulative loss median $B"] = h.value[k, 0] / 1e9
    cum = results.quantiles("cumulative_azure_spend", (5, 50, 95)).value[-1] / 1e9
    out["cumulative Azure spend to horizon p5/p50/p95 $B"] = tuple(np.round(cum, 1))
    for name, dist in (("repaid", results.repayment), ("cap reached", results.cap_reached),
                       ("commitment met", results.commitment_met)):
        m = dist.quantiles[50.0][0]
        out[f"{name}: median month"] = results.month_label(m) or "not by the horizon"
        out[f"{name}: P(not by horizon)"] = round(dist.censored, 3)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--paths", type=int, default=20000)
    args = p.parse_args(argv)
    config = mcsim.load_config(args.config).with_simulation(paths=args.paths)
    results = mcsim.simulate(config, condition=False)
    bad = 0
    for r in facts_vs_model(config):
        lo, hi = (25, 75) if r["firm"] else (5, 95)
        ok = lo <= r["percentile"] <= hi
        bad += not ok
        m = r["model"]
        print(f"{'ok ' if ok else 'OUT'} {r['name'][:44]:44s} {r['value']:>10.4g} "
              f"[{m['p5']:.3g} {m['p25']:.3g} | {m['p50']:.3g} | {m['p75']:.3g} "
              f"{m['p95']:.3g}] pct {r['percentile']:5.1f} (need {lo}-{hi})")
    for k, v in long_run(results).items():
        print(f"    {k}: {v if not isinstance(v, float) else round(v, 3)}")
    print(f"{bad} facts outside their band")
    return 0


if __name__ == "__main__":
    sys.exit(main())
