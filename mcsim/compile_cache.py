"""A persistent cache of compiled kernels for the command line.

Compiling the engine's kernels is a fixed cost of every ``mcsim`` process (on 2 CPU cores
about 3 s for a run's chunk kernel and 2.5 s for the facts table's), paid again by every run
of the same config shape. JAX can keep compiled executables on disk, keyed by the program,
the JAX version, the device and the compile options, and load them instead: the same
executable, so the same numbers bit for bit, without the compile.

The command line keeps them in ``$MCSIM_CACHE_DIR``, by default ``mcsim/xla`` under
``$XDG_CACHE_HOME`` (``~/.cache``); ``MCSIM_CACHE_DIR=off`` turns the cache off. mcsim
writes only there and never deletes an entry (remove the folder to free the space).
"""

from __future__ import annotations

import os
from pathlib import Path

#: environment variable: the cache folder, or "off"
ENV = "MCSIM_CACHE_DIR"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcsim" / "xla"


def use_compile_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Keep compiled kernels in ``path`` (default: ``$MCSIM_CACHE_DIR``, else
    :func:`default_cache_dir`). Returns the folder, or None when the cache is off
    (``MCSIM_CACHE_DIR=off`` or empty) or JAX already has a cache folder."""
    import jax

    if path is None:
        text = os.environ.get(ENV)
        if text is not None and text.strip().lower() in ("", "off", "0", "none"):
            return None
        path = text or default_cache_dir()
    if jax.config.jax_compilation_cache_dir:
        return None
    folder = Path(path).expanduser()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return folder
