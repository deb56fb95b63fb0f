"""A run's report directory (:func:`write_report`): summary.json, the CSV tables, the plots
and report.html, written into a staging directory swapped into place at the end
(:mod:`mcsim.report.outdir`), so a failed run never leaves a half-written report, and an
earlier report at the same place survives a failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .html import write_html
from .outdir import output_directory
from .summary import summarize
from .tables import write_tables

if TYPE_CHECKING:
    from ..results import Results


def write_report(results: Results, out_dir: str | Path, *, plots: bool = True,
                 sample_paths: int = 0, force: bool = False,
                 on_stage: Callable[[str], None] | None = None) -> Path:
    """Write summary.json, the CSV tables, the plots and report.html under ``out_dir``;
    returns it. With an SMC posterior also posterior_parameters.csv,
    posterior_predictive.csv, smc_steps.csv and their three plots.

    ``sample_paths``: also the parameters and monthly flows of the first K paths
    (:mod:`mcsim.sample_paths`).

    The files are written into a staging directory beside ``out_dir`` and moved into
    place only when all are complete; mcsim replaces only files it wrote itself
    (:mod:`mcsim.report.outdir`), and refuses a non-empty directory it did not write unless
    ``force``.

    ``on_stage(name)`` is called as each part is begun ("summary.json", "CSV tables",
    each plot's file name, "report.html", "sample paths"): progress for a writing that
    takes seconds (the plots most of them).
    """
    out_dir = Path(out_dir)

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name)

    with output_directory(out_dir, force=force) as tmp:
        stage("summary.json")
        summary = summarize(results)
        with open(tmp / "summary.json", "w") as fh:
            json.dump(summary, fh, indent=1, allow_nan=False)
            fh.write("\n")
        stage("CSV tables")
        write_tables(results, tmp)
        if plots:
            from .. import plots as plotting

            plotting.write_plots(results, tmp, summary, on_plot=on_stage)
        stage("report.html")
        write_html(summary, tmp)
        if sample_paths:
            stage("sample paths")
            from ..sample_paths import write_sample_paths

            write_sample_paths(results.config, min(sample_paths, results.num_paths), tmp,
                               results.info.dtype)
    return out_dir
