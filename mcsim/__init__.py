"""mcsim: Monte Carlo futures of OpenAI's Azure compute bill and Microsoft's repayment.

The public API is the names in ``__all__`` below, plus two documented packages:
:mod:`mcsim.engine` (runs, kernels and their plans) and :mod:`mcsim.report` (summary.json,
tables, report.html, comparisons). Every other module is internal; ``docs/architecture.md``
maps them.

Importing mcsim changes nothing in JAX. The kernel runs in float32 but reports float64
sums, so the entry points that run it (:func:`simulate`, :func:`run_sweep`,
:func:`sensitivity`, :func:`reproduce`) switch on JAX's 64-bit mode for the process
(:func:`enable_x64`, see :mod:`mcsim.x64`).
"""

from ._version import __version__
from .api import reproduce, run_sweep, simulate
from .config import Config, ConfigError, load_config, parse_config_text
from .cpu_devices import use_cpu_cores
from .overrides import with_overrides
from .results import ConditionedResults, Results
from .sensitivity import SensitivityResult, sensitivity
from .x64 import enable_x64

__all__ = ["Config", "ConditionedResults", "ConfigError", "Results", "SensitivityResult",
           "enable_x64", "load_config", "parse_config_text", "plot_compare", "reproduce",
           "run_sweep", "sensitivity", "simulate", "use_cpu_cores", "with_overrides",
           "__version__"]


def __getattr__(name: str):
    """``mcsim.plot_compare`` (:func:`mcsim.plots.plot_compare`), imported on first use:
    importing mcsim does not import matplotlib."""
    if name == "plot_compare":
        from .plots import plot_compare

        return plot_compare
    raise AttributeError(f"module 'mcsim' has no attribute {name!r}")
