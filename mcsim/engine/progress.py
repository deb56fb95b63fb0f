"""The progress every kind of run shows (a leaf of the engine: the path runner, the run's
host state, the API and the command line use it; it imports neither JAX nor NumPy, so the
command line can say things before JAX is imported).

* :func:`progress_bar`: a bar of paths that also ticks while no chunk has finished yet
  (a run of one or two chunks, or its first call's compile, used to show nothing at all:
  tqdm redraws only on an update).
* :func:`progress_shown` and :func:`say`: one line of progress on stderr for the stages
  between and after the bars (tables, SMC steps, a sweep's points, writing a report).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import weakref
from collections.abc import Iterator

#: seconds between redraws of a bar that has had no update (its elapsed time ticks on)
TICK_SECONDS = 1.0


def progress_shown(progress: bool | None) -> bool:
    """Whether ``progress`` asks for progress on the terminal: True, or None (the
    default) when stderr is a terminal; a bar itself waits 2 s (a short run shows none)."""
    return bool(progress) or (progress is None and sys.stderr.isatty())


def say(progress: bool | None, text: str) -> None:
    """One line of progress on stderr (``mcsim: text``) where :func:`progress_shown`:
    the stages between and after the progress bars, which take seconds too."""
    if progress_shown(progress):
        print(f"mcsim: {text}", file=sys.stderr, flush=True)


def progress_bar(total: int | None, progress: bool | None, desc: str = "mcsim",
                 unit: str = "path", bar_format: str | None = None):
    """A tqdm bar of paths (or of another ``unit``; ``total`` None: a counter; tqdm's
    ``bar_format``), or None (by default only on a terminal, for work over 2 s).

    The bar redraws itself every :data:`TICK_SECONDS` even without an update, so that a
    run whose first call compiles for seconds, or whose paths fit in one call, shows its
    elapsed time instead of a silent terminal."""
    if progress is False:
        return None
    # by default only on a terminal; ``delay`` keeps it hidden for runs under 2 s
    if progress is None and not sys.stderr.isatty():
        return None
    return _ticking_bar(total=total, unit=unit, unit_scale=unit == "path", desc=desc,
                        mininterval=0.5, delay=0.0 if progress else 2.0, smoothing=0.1,
                        bar_format=bar_format)


@contextlib.contextmanager
def ticking(progress: bool | None, desc: str) -> Iterator[None]:
    """A stage of seconds with no bar of its own (tables, a bootstrap, writing files):
    ``desc [elapsed]`` ticking on the terminal while it lasts (shown as a bar is: after
    2 s by default, at once with ``progress=True``)."""
    bar = progress_bar(None, progress, desc=desc, bar_format="{desc} [{elapsed}]")
    try:
        yield
    finally:
        if bar is not None:
            bar.close()


def _ticking_bar(**options):
    """A tqdm bar with a daemon thread that redraws it while it waits for updates (the
    thread holds only a weak reference: a bar dropped without ``close`` stops it too)."""
    from tqdm import tqdm

    class TickingBar(tqdm):
        def __init__(self, **kw) -> None:
            super().__init__(**kw)
            self._stop = threading.Event()
            ref = weakref.ref(self)
            stop = self._stop
            self._ticker = threading.Thread(target=_tick, args=(ref, stop), daemon=True,
                                            name="mcsim-progress")
            self._ticker.start()

        def close(self) -> None:
            stop = getattr(self, "_stop", None)
            if stop is not None:
                stop.set()
            super().close()

    return TickingBar(**options)


def _tick(ref, stop: threading.Event) -> None:
    """Redraw the bar behind ``ref`` every tick until ``stop`` (or the bar is gone)."""
    while not stop.wait(TICK_SECONDS):
        bar = ref()
        if bar is None or bar.disable:
            return
        now = bar._time()
        # the bar's own delay: a run under 2 s still shows nothing
        if now - bar.start_t >= bar.delay and now - bar.last_print_t >= TICK_SECONDS:
            with bar._lock:
                if stop.is_set() or bar.disable:
                    return
                bar.display()
                # tqdm's close finishes the line only for a bar it has shown
                bar.last_print_t = now
        del bar


__all__ = ["TICK_SECONDS", "progress_bar", "progress_shown", "say", "ticking"]
