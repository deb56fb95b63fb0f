"""The progress bar every kind of run shows (a leaf of the engine: the path runner and the
run's host state both use it)."""

from __future__ import annotations


def progress_bar(total: int, progress: bool | None):
    """A tqdm bar of paths, or None (by default only on a terminal, for runs over 2 s)."""
    if progress is False:
        return None
    import sys

    from tqdm import tqdm

    # by default only on a terminal; ``delay`` keeps it hidden for runs under 2 s
    if progress is None and not sys.stderr.isatty():
        return None
    return tqdm(total=total, unit="path", unit_scale=True, desc="mcsim", mininterval=0.5,
                delay=0.0 if progress else 2.0, smoothing=0.1)
