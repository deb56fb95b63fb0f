"""A sensitivity study's files (:func:`write_sensitivity`): sensitivity.csv, sensitivity.json,
drivers.csv, tornado.png and drivers.png. The study itself is
:func:`mcsim.sensitivity.sensitivity`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .._version import __version__
from .format import json_safe
from .outdir import output_directory

if TYPE_CHECKING:
    from ..config import Config
    from ..sensitivity import SensitivityResult


def write_sensitivity(result: SensitivityResult, config: Config, out_dir: str | Path, *,
                      force: bool = False) -> Path:
    """Written atomically into ``out_dir``:

    * ``sensitivity.csv``: per (output, factor) every Sobol index with its interval, the
      rank correlation with its interval and the top-minus-bottom-decile difference with
      its standard error (:meth:`SensitivityResult.frame`);
    * ``drivers.csv``: per (output, group, parameter) the mean percentile of each parameter
      on the rows with the highest (``top``) and lowest (``bottom``) 10% of each output
      (:meth:`SensitivityResult.drivers_frame`);
    * ``sensitivity.json``: the same indices and signed measures with provenance (each
      output with its words and unit), the ``warnings`` (Sobol intervals too wide for the
      design: increase ``--base-rows``) and ``left_out`` (output -> why it has no
      variance: "every path is repaid by 2030-12");
    * ``tornado.png`` (signed, one panel per output) and ``drivers.png`` (the lead
      output: the first).
    """
    import pandas as pd

    from .. import plots_sensitivity

    out_dir = Path(out_dir)
    with output_directory(out_dir, force=force) as tmp:
        frame = result.frame()
        frame.to_csv(tmp / "sensitivity.csv", float_format="%.6g")
        drivers = {}
        if result.base_percentiles is not None:
            drivers = {name: result.drivers_frame(name) for name in result.indices}
            pd.concat(drivers, names=["output", "group", "parameter"]).to_csv(
                tmp / "drivers.csv", float_format="%.6g")
        signed = ("rank_correlation", "rank_correlation_low", "rank_correlation_high",
                  "top_minus_bottom_decile", "top_minus_bottom_decile_se")

        def factor_doc(name, idx, i, f):
            row = {"first": idx.first[i], "first_low": idx.first_low[i],
                   "first_high": idx.first_high[i], "total": idx.total[i],
                   "total_low": idx.total_low[i], "total_high": idx.total_high[i]}
            for col in signed:
                if col in frame.columns:
                    row[col] = frame.loc[(name, f), col]
            return row

        def output_doc(name, idx):
            what, unit = plots_sensitivity.output_label(name, result.by_month)
            return {"what": what, "unit": unit, "mean": result.output_means[name],
                    "variance": idx.variance,
                    "factors": {f: factor_doc(name, idx, i, f)
                                for i, f in enumerate(idx.names)}}

        doc = {
            "outputs": {name: output_doc(name, idx) for name, idx in result.indices.items()},
            "left_out": dict(result.left_out),
            "by_month": result.by_month,
            "repaid_by_month": result.by_month,
            "top": {name: result.top(name, 3) for name in result.indices},
            **({"top_for_repayment_month": result.top("repayment_month", 3)}
               if "repayment_month" in result.indices else {}),
            "warnings": list(result.warnings),
            "provenance": {"config_path": config.source_path, "config_text": config.source_text,
                           "base_rows": result.num_base, "model_runs": result.num_rows,
                           "seed": result.seed, "confidence": result.indices[
                               result.lead].confidence,
                           "seconds": result.seconds, "mcsim_version": __version__,
                           "estimators": "first order: Saltelli et al. (2010), centred; "
                                         "total: Jansen (1999); bootstrap percentile "
                                         "intervals over base rows; rank correlation: "
                                         "Spearman over the 2N base rows, Fisher-z "
                                         "interval (se sqrt(1.06 / (n - 3))); deciles "
                                         "and drivers: the parameters' prior CDF ranks "
                                         "on the base rows"},
        }
        (tmp / "sensitivity.json").write_text(json.dumps(json_safe(doc), indent=2) + "\n")
        plots_sensitivity.write_tornado(result, tmp / "tornado.png")
        if drivers:
            plots_sensitivity.write_drivers(result, tmp / "drivers.png")
    return out_dir
