"""Layout checks of a drawn matplotlib Figure, from the renderer's own bounding boxes: what
a researcher cannot read is a bug (``tests/test_plot_layout.py`` runs them on every plot).

* no two text labels overlap (titles, axis labels, tick labels, annotations, legends'
  texts), and every one lies inside the figure (not cut at its edge);
* no legend covers data: no point of a data line (in display coordinates) inside a
  legend's box; reference lines (``axhline``/``axvline``, drawn in axes coordinates) are
  guides, not data;
* the axes are scaled to the data: on a linear axis the data lines span at least a given
  share of each axis's range.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.text import Text

#: pixels of overlap tolerated (antialiasing, a descender touching the next line)
SLACK = 1.0


def _texts(fig) -> list[tuple[str, object]]:
    """(text, display bbox) of every visible, non-empty text the figure draws."""
    renderer = fig.canvas.get_renderer()
    ticks, drawn = set(), set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis.majorTicks + axis.minorTicks:
                ticks |= {id(tick.label1), id(tick.label2)}
            # the ticks the axis draws now (matplotlib keeps spare Tick objects, and
            # ticks outside the view, whose labels are never drawn)
            for tick in axis._update_ticks():
                drawn |= {id(tick.label1), id(tick.label2)}
    out = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip():
            continue
        if t.axes is not None and not t.axes.get_visible():
            continue
        if id(t) in ticks and id(t) not in drawn:
            continue
        out.append((t.get_text(), t.get_window_extent(renderer)))
    return out


def _overlap(a, b) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > SLACK
            and min(a.y1, b.y1) - max(a.y0, b.y0) > SLACK)


def text_problems(fig, draw: bool = True) -> list[str]:
    """Overlapping texts and texts cut at the figure's edge."""
    if draw:
        fig.canvas.draw()
    texts = _texts(fig)
    box = fig.bbox
    problems = []
    for i, (text, bb) in enumerate(texts):
        if bb.x0 < box.x0 - SLACK or bb.x1 > box.x1 + SLACK or bb.y0 < box.y0 - SLACK \
                or bb.y1 > box.y1 + SLACK:
            problems.append(f"cut at the figure's edge: {text!r}")
        for other, ob in texts[i + 1:]:
            if _overlap(bb, ob):
                problems.append(f"overlap: {text!r} and {other!r}")
    return problems


def _data_lines(ax: Axes) -> list[Line2D]:
    """The Axes' lines that hold data: visible, in data coordinates (not axhline/axvline)."""
    return [line for line in ax.get_lines()
            if line.get_visible() and line.get_transform() == ax.transData
            and len(np.atleast_1d(line.get_xdata())) > 0]


def _points(line: Line2D) -> np.ndarray:
    x = np.asarray(line.get_xdata(orig=False))
    y = np.asarray(line.get_ydata(orig=False))
    if np.issubdtype(x.dtype, np.datetime64):
        import matplotlib.dates as mdates

        x = mdates.date2num(x)
    xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    return xy[np.isfinite(xy).all(axis=1)]


def _data_points(ax: Axes) -> list[tuple[str, np.ndarray]]:
    """(label, points in data coordinates) of every data line and line collection (the
    whiskers of ``vlines``, error bars) on ``ax``."""
    out = [(line.get_label(), _points(line)) for line in _data_lines(ax)]
    for c in ax.collections:
        if isinstance(c, LineCollection) and c.get_visible() \
                and c.get_transform() == ax.transData:
            segments = [np.asarray(seg, float) for seg in c.get_segments() if len(seg)]
            if segments:
                xy = np.concatenate(segments)
                out.append((c.get_label(), xy[np.isfinite(xy).all(axis=1)]))
    return out


def legend_problems(fig, draw: bool = True) -> list[str]:
    """A legend box with a data line's point inside it, or outside the figure."""
    if draw:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    for ax in fig.axes:
        for legend in [c for c in ax.get_children() if isinstance(c, Legend)]:
            box = legend.get_window_extent(renderer)
            if box.x0 < fig.bbox.x0 - SLACK or box.x1 > fig.bbox.x1 + SLACK \
                    or box.y0 < fig.bbox.y0 - SLACK or box.y1 > fig.bbox.y1 + SLACK:
                problems.append(f"legend cut at the figure's edge on {ax.get_title()!r}")
            for label, xy in _data_points(ax):
                if not len(xy):
                    continue
                d = ax.transData.transform(xy)
                inside = (d[:, 0] > box.x0 + SLACK) & (d[:, 0] < box.x1 - SLACK) \
                    & (d[:, 1] > box.y0 + SLACK) & (d[:, 1] < box.y1 - SLACK)
                if inside.any():
                    problems.append(f"legend covers {inside.sum()} points of "
                                    f"{label!r} on {ax.get_title()!r}")
    return problems


def scale_problems(fig, share: float = 0.3) -> list[str]:
    """A linear axis whose data lines span less than ``share`` of its range (or, on a
    date x axis, whose lines change over less than it: a survival curve flat for most of
    the width)."""
    problems = []
    for ax in fig.axes:
        lines = _data_lines(ax)
        if not lines:
            continue
        xy = np.concatenate([p for _, p in _data_points(ax)])
        if not len(xy):
            continue
        for k, (lo, hi), scale in ((1, ax.get_ylim(), ax.get_yscale()),
                                   (0, ax.get_xlim(), ax.get_xscale())):
            if scale != "linear" or hi <= lo:
                continue
            span = xy[:, k].max() - xy[:, k].min()
            if k == 0:  # x: where the lines change, not where they run flat
                changing = []
                for line in lines:
                    p = _points(line)
                    moves = np.flatnonzero(np.abs(np.diff(p[:, 1])) > 1e-12)
                    if len(moves):
                        changing += [p[moves[0], 0], p[moves[-1] + 1, 0]]
                if len(changing) >= 2:
                    span = max(changing) - min(changing)
            if span < share * (hi - lo) and span > 0:
                problems.append(f"{'xy'[k]} axis of {ax.get_title()!r}: data span "
                                f"{span / (hi - lo):.0%} of it")
    return problems


def all_problems(fig, share: float = 0.3) -> list[str]:
    fig.canvas.draw()  # once: the layout engine places everything
    return text_problems(fig, False) + legend_problems(fig, False) + \
        scale_problems(fig, share)
