"""mcsim: Monte Carlo futures of OpenAI's Azure compute bill and Microsoft's repayment.

The kernel runs in float32 on the device; the sums it reports are float64, so JAX's 64-bit
mode is switched on at import (it changes only the default dtype of new arrays: every array
of the kernel names its dtype).
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from .api import reproduce, simulate, with_overrides  # noqa: E402
from .config import Config, ConfigError, load_config, parse_config_text  # noqa: E402
from .sensitivity import sensitivity  # noqa: E402

__all__ = ["Config", "ConfigError", "load_config", "parse_config_text", "reproduce",
           "sensitivity", "simulate", "with_overrides", "__version__"]
