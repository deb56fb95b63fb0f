"""How many CPU devices JAX makes: one per core, so that the engine's chunks run on
every core.

XLA runs one program on one CPU device, and splits only some of its loops over threads
(not an in-place update, not a scatter): on a 2-core machine one device kept the cores
busy 1.5x of the time, two devices 1.9x. The engine shards paths over local devices and
its results are the same bits for any device count (``tests/test_engine.py``), so
choosing the count changes the speed only.

The count must be chosen before JAX starts its CPU backend; the command line does it
first thing. From Python, call :func:`use_cpu_cores` before anything runs on a device.
"""

from __future__ import annotations

import os

#: environment variable: the number of CPU devices (default: the cores this process may use)
ENV = "MCSIM_CPU_DEVICES"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_cpu_cores(count: int | None = None) -> int | None:
    """Ask JAX for ``count`` CPU devices (default: ``$MCSIM_CPU_DEVICES``, else one per
    available core). Returns the count set, or None where it is left as it is: JAX's CPU
    backend already started, or ``XLA_FLAGS`` or ``jax_num_cpu_devices`` already choose
    it. A count that is not a positive integer raises ValueError naming it."""
    import jax
    from jax._src import xla_bridge

    if count is None:
        text = os.environ.get(ENV)
        if text is not None:
            try:
                count = int(text)
            except ValueError:
                count = 0  # refused below, with the text as given
            if count < 1:
                raise ValueError(f"{ENV} = {text!r}: expected a positive integer "
                                 "(CPU devices to run on)")
    elif not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count = {count!r}: expected a positive integer (CPU devices)")
    if xla_bridge.backends_are_initialized() \
            or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") \
            or jax.config.jax_num_cpu_devices != -1:
        return None
    count = count or available_cores()
    jax.config.update("jax_num_cpu_devices", count)
    return count
