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

import sys
import types

from ._version import __version__

#: each public name -> the module it lives in, imported on first use (PEP 562): ``import
#: mcsim`` (and so ``mcsim --help``, whose module is ``mcsim.cli``) does not import JAX,
#: matplotlib or pandas, 2-3 s that a command failing on its arguments should not wait for
_LAZY = {"simulate": "api", "run_sweep": "api", "reproduce": "api",
         "Config": "config", "ConfigError": "config", "load_config": "config",
         "parse_config_text": "config", "use_cpu_cores": "cpu_devices",
         "with_overrides": "overrides", "ConditionedResults": "results",
         "Results": "results", "SensitivityResult": "sensitivity",
         "sensitivity": "sensitivity", "enable_x64": "x64", "plot_compare": "plots"}

__all__ = ["Config", "ConditionedResults", "ConfigError", "Results", "SensitivityResult",
           "enable_x64", "load_config", "parse_config_text", "plot_compare", "reproduce",
           "run_sweep", "sensitivity", "simulate", "use_cpu_cores", "with_overrides",
           "__version__"]


def __getattr__(name: str):
    """A public name, imported from its module on first use (see ``_LAZY``)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mcsim' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """mcsim's module type: ``mcsim.sensitivity`` stays the function (as it was when this
    file imported it eagerly) even after the submodule of the same name is imported, which
    would otherwise bind the module there (``sys.modules["mcsim.sensitivity"]`` has it)."""

    def __setattr__(self, name: str, value) -> None:
        if name == "sensitivity" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
