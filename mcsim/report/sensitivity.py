"""A sensitivity study's files (:func:`write_sensitivity`): sensitivity.csv, sensitivity.json
and tornado.png. The study itself is :func:`mcsim.sensitivity.sensitivity`."""

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
    """``sensitivity.csv`` (every index with its interval), ``sensitivity.json`` (the same
    with provenance) and ``tornado.png``, written atomically into ``out_dir``."""
    from .. import plots

    out_dir = Path(out_dir)
    with output_directory(out_dir, force=force) as tmp:
        result.frame().to_csv(tmp / "sensitivity.csv", float_format="%.6g")
        doc = {
            "outputs": {
                name: {"mean": result.output_means[name], "variance": idx.variance,
                       "factors": {f: {"first": idx.first[i], "first_low": idx.first_low[i],
                                       "first_high": idx.first_high[i],
                                       "total": idx.total[i], "total_low": idx.total_low[i],
                                       "total_high": idx.total_high[i]}
                                   for i, f in enumerate(idx.names)}}
                for name, idx in result.indices.items()},
            "repaid_by_month": result.by_month,
            "top_for_repayment_month": result.top("repayment_month", 3),
            "provenance": {"config_path": config.source_path, "config_text": config.source_text,
                           "base_rows": result.num_base, "model_runs": result.num_rows,
                           "seed": result.seed, "confidence": result.indices[
                               "repayment_month"].confidence,
                           "seconds": result.seconds, "mcsim_version": __version__,
                           "estimators": "first order: Saltelli et al. (2010), centred; "
                                         "total: Jansen (1999); bootstrap percentile "
                                         "intervals over base rows"},
        }
        (tmp / "sensitivity.json").write_text(json.dumps(json_safe(doc), indent=2) + "\n")
        plots.write_tornado(result, tmp / "tornado.png")
    return out_dir
