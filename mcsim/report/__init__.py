"""Reporting: everything mcsim writes or prints about finished runs.

Modules, each one job (imports go down this list, never up; ``format`` and ``outdir`` are
leaves):

* :mod:`~mcsim.report.format` -- shared formatting: dollars, open interval ends, strict
  JSON for TOML documents, the CSV cell format.
* :mod:`~mcsim.report.outdir` -- output directories mcsim owns: checked before a run,
  replaced atomically, a user's files never touched.
* :mod:`~mcsim.report.headline` -- the figures a run leads with, each with its Monte Carlo
  error (:func:`headline`): the terminal, report.html and summary.json show them first.
* :mod:`~mcsim.report.summary` -- :class:`~mcsim.results.Results` as summary.json's plain
  data (statistics with their errors, method, provenance).
* :mod:`~mcsim.report.text` -- the short terminal summary.
* :mod:`~mcsim.report.tables` -- the CSV tables (and, for an SMC-conditioned run, its posterior
  parameters, predictive check and tempering steps).
* :mod:`~mcsim.report.html` -- report.html, one self-contained page (plots inline).
* :mod:`~mcsim.report.files` -- a run's report directory: all of the above, atomically.
* :mod:`~mcsim.report.compare` -- finished runs side by side: differences with their
  errors, overlaid charts (compare.txt, compare.png).
* :mod:`~mcsim.report.sweep` -- a sweep's table, plot and per-point reports.
* :mod:`~mcsim.report.sensitivity` -- a sensitivity study's CSV, JSON and tornado chart.

Plots are drawn by :mod:`mcsim.plots`, imported only inside the functions that write them:
importing this package imports neither matplotlib nor JAX.
"""

from .compare import compare_text, load_summary, plot_compare, write_compare
from .files import write_report
from .format import json_restore, json_safe, money_text
from .headline import headline
from .html import render, write_html
from .outdir import check_output_dir, output_directory
from .sensitivity import write_sensitivity
from .summary import SCHEMA, summarize
from .sweep import plot_sweep, sweep_table, write_sweep
from .tables import write_tables
from .text import format_summary

__all__ = ["SCHEMA", "check_output_dir", "compare_text", "format_summary", "headline",
           "json_restore", "json_safe", "load_summary", "money_text", "output_directory",
           "plot_compare", "plot_sweep", "render", "summarize", "sweep_table",
           "write_compare", "write_html", "write_report", "write_sensitivity", "write_sweep",
           "write_tables"]
