"""Plots that compose (issue 15, item 1): every plot_* draws on the given Axes without
touching its title, shrinking its limits or repeating legend entries; dates on the x axis;
repayment as the survival S(m) = P(not yet repaid by month m), median marked, censoring
shown without stretching the axis; plot_compare overlays runs with a legend by name."""

import dataclasses

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import mcsim  # noqa: E402
from mcsim import plots  # noqa: E402
from tests.helpers import CONFIGS_DIR  # noqa: E402

HORIZON = "2030-12"
PATHS = 4096


def _run(name: str):
    cfg = mcsim.load_config(CONFIGS_DIR / name).with_simulation(horizon=HORIZON, paths=PATHS)
    return mcsim.simulate(cfg, condition=False)


@pytest.fixture(scope="module")
def base():
    return _run("base.toml")


@pytest.fixture(scope="module")
def other():
    return _run("v1_base.toml")


def _ax():
    return Figure(figsize=(8, 4.5), layout="constrained").add_subplot()


def _legend_labels(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def _horizon_end(results) -> float:
    """The end of the horizon's month (matplotlib date number)."""
    return mdates.date2num(plots.month_dates(results, extra=1)[-1])


DRAWS = {
    "plot_fan": lambda r, ax: plots.plot_fan(r, ax),
    "plot_annual": lambda r, ax: plots.plot_annual(r, ax),
    "plot_annual_linear": lambda r, ax: plots.plot_annual(r, ax, scale="linear"),
    "plot_survival": lambda r, ax: plots.plot_survival(r, ax),
    "plot_survival_credit": lambda r, ax: plots.plot_survival(r, ax,
                                                              which="credit_exhaustion"),
    "plot_conditioned_fan": lambda r, ax: plots.plot_conditioned_fan(
        dataclasses.replace(r, conditioned=r), ax),
    "plot_conditioned_survival": lambda r, ax: plots.plot_conditioned_survival(
        dataclasses.replace(r, conditioned=r), ax),
    "plot_compare_fan": lambda r, ax: plots.plot_compare({"a": r}, ax),
    "plot_compare_survival": lambda r, ax: plots.plot_compare({"a": r}, ax, what="survival"),
}


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_a_user_title_survives_and_the_axes_is_returned(base, name):
    ax = _ax()
    ax.set_title("my title")
    assert DRAWS[name](base, ax) is ax
    assert ax.get_title() == "my title"
    labels = _legend_labels(ax)
    assert labels and len(labels) == len(set(labels))


@pytest.mark.parametrize("name", ["plot_fan", "plot_annual", "plot_survival"])
def test_a_new_axes_when_none_is_given(base, name):
    import matplotlib.pyplot as plt

    ax = getattr(plots, name)(base)
    assert ax is not None and ax.get_legend() is not None
    plt.close(ax.figure)


def test_a_second_fan_keeps_both_runs_bands_in_view(base, other):
    ax = _ax()
    plots.plot_fan(other, ax, label="2019 terms")
    plots.plot_fan(base, ax, label="today's terms")
    lo, hi = ax.get_ylim()
    for r in (base, other):
        q = r.quantiles("cumulative_azure_spend", (5, 95)).value / plots.B
        assert lo <= np.nanmin(q[:, 0]) and np.nanmax(q[:, 1]) <= hi
    labels = _legend_labels(ax)
    assert len(labels) == len(set(labels))
    assert {"2019 terms: median", "today's terms: median", "2019 terms: mean",
            "today's terms: mean"} <= set(labels)
    assert all(label.startswith(("2019 terms: ", "today's terms: ")) for label in labels)


def test_means_are_dashed_in_the_series_colour_and_color_label_work(base):
    ax = plots.plot_fan(base, _ax(), label="base run", color="tab:green")
    lines = {line.get_label(): line for line in ax.get_lines()}
    mean, median = lines["base run: mean"], lines["base run: median"]
    assert mean.get_linestyle() == "--"
    green = matplotlib.colors.to_rgba("tab:green")
    assert matplotlib.colors.to_rgba(mean.get_color()) == green
    assert matplotlib.colors.to_rgba(median.get_color()) == green
    assert matplotlib.colors.to_rgba(mean.get_color()) != matplotlib.colors.to_rgba("black")
    # default colours: the property cycle, a different one per call
    ax = _ax()
    plots.plot_fan(base, ax, label="one")
    plots.plot_fan(base, ax, label="two")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["one: mean"].get_color() == lines["one: median"].get_color()
    assert lines["one: median"].get_color() != lines["two: median"].get_color()
    assert "black" not in {lines["one: mean"].get_color(), lines["two: mean"].get_color()}


def test_scale_and_bad_choices_name_the_valid_ones(base):
    assert plots.plot_fan(base, _ax(), scale="log").get_yscale() == "log"
    assert plots.plot_annual(base, _ax(), scale="linear").get_yscale() == "linear"
    with pytest.raises(ValueError, match="linear, log"):
        plots.plot_fan(base, _ax(), scale="logit")
    with pytest.raises(ValueError, match="repayment, credit_exhaustion, cap_reached, "
                                         "commitment_met"):
        plots.plot_survival(base, _ax(), which="repaymnet")
    with pytest.raises(ValueError, match="fan, survival"):
        plots.plot_compare({"a": base}, _ax(), what="cdf")
    with pytest.raises(ValueError, match="repayment"):
        plots.plot_compare({"a": base}, _ax(), what="survival", which="credit")
    with pytest.raises(ValueError, match="azure_spend"):
        plots.plot_annual(base, _ax(), flow="azure_spnd")
    with pytest.raises(ValueError, match="conditioned"):
        plots.plot_conditioned_fan(base, _ax())


@pytest.mark.parametrize("name", ["plot_fan", "plot_annual", "plot_survival"])
def test_the_x_axis_is_in_dates_and_timestamps_line_up(base, name):
    ax = _ax()
    DRAWS[name](base, ax)
    converter = ax.xaxis.get_converter()
    assert type(converter).__module__ == "matplotlib.dates", converter  # a date converter
    line = ax.axvline(pd.Timestamp("2030-01-01"))
    x = mdates.date2num(np.datetime64("2030-01-01"))
    assert line.get_xdata()[0] == pytest.approx(x) or \
        mdates.date2num(line.get_xdata()[0]) == pytest.approx(x)
    lo, hi = ax.get_xlim()
    assert lo < x < hi
    # the first month sits at its month start
    first = mdates.date2num(np.datetime64(base.grid.label(0) + "-01"))
    assert lo <= first + 200


def test_the_fan_median_is_at_the_month_starts(base):
    ax = plots.plot_fan(base, _ax(), label="b")
    median = next(line for line in ax.get_lines() if line.get_label() == "b: median")
    xs = mdates.date2num(median.get_xdata())
    assert xs[0] == pytest.approx(mdates.date2num(np.datetime64("2024-01-01")))
    assert xs[-1] == pytest.approx(mdates.date2num(np.datetime64(HORIZON + "-01")))


@pytest.mark.parametrize("which", ["repayment", "credit_exhaustion"])
def test_survival_is_one_minus_the_cdf_within_the_horizon_with_its_median(base, which):
    ax = plots.plot_survival(base, _ax(), which=which, label="run")
    dist = getattr(base, which)
    step = next(line for line in ax.get_lines() if line.get_label() == "run")
    s = np.asarray(step.get_ydata(), float)
    # S = 1 - CDF month by month up to where the curve stops; it stops only where the
    # rest is flat, so its last value is still "not by the horizon"
    full = np.append(1.0 - dist.cdf, 1.0 - dist.cdf[-1])
    np.testing.assert_allclose(s, full[:len(s)])
    np.testing.assert_allclose(full[len(s) - 1:], s[-1])
    assert s[-1] == pytest.approx(dist.censored)  # ends at "not by the horizon"
    assert ax.get_xlim()[1] <= _horizon_end(base) + 1e-6
    assert "P(" in ax.get_ylabel() and "not yet" in ax.get_ylabel()
    markers = [line for line in ax.get_lines() if line.get_gid() == "median-marker"]
    assert len(markers) == 1
    med = dist.quantiles[50.0][0]
    if med is not None:
        assert mdates.date2num(markers[0].get_xdata()[0]) == pytest.approx(
            mdates.date2num(plots.month_dates(base)[med]))
        assert any(base.grid.label(med) in t.get_text() for t in ax.texts)
    # censoring: a marker at the right edge and a note with its probability
    assert [line for line in ax.get_lines() if line.get_gid() == "censored-marker"]
    assert any("not by " + HORIZON in t.get_text() for t in ax.texts)
    lo, hi = ax.get_ylim()
    assert lo <= 0.0 and hi >= 1.0


def test_survival_after_a_fan_on_other_axes_and_limits_with_other_artists(base):
    """The survival curve does not shrink limits other artists need."""
    ax = _ax()
    ax.plot(np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]"), [0.2, 0.3])
    plots.plot_survival(base, ax)
    assert ax.get_xlim()[0] <= mdates.date2num(np.datetime64("2020-01-01"))


@pytest.mark.filterwarnings("ignore:Data has no positive values")
def test_annual_log_marks_years_at_zero(base):
    ax = plots.plot_annual(base, _ax(), flow="azure_commitment_shortfall", label="b")
    q = base.quantiles("azure_commitment_shortfall", (50,)).value[:, 0]
    mean, _ = base.mean("azure_commitment_shortfall")
    zero = int(((q <= 0) | (mean <= 0)).sum())
    marks = [line for line in ax.get_lines() if "below the log axis" in line.get_label()]
    if zero:
        assert len(marks) == 1 and len(marks[0].get_xdata()) == zero
    else:
        assert not marks


def test_thin_bands_get_no_legend_entry(base):
    ax = plots.plot_fan(base, _ax(), bands=((49.9, 50.1), (5, 95)), label="b")
    labels = _legend_labels(ax)
    assert "b: 5-95%" in labels and "b: 49.9-50.1%" not in labels


def test_plot_compare_names_each_run_once(base, other):
    runs = {"today": base, "2019 terms": other}
    for what in ("fan", "survival"):
        ax = mcsim.plot_compare(runs, _ax(), what=what)
        labels = _legend_labels(ax)
        # overlaid survival curves carry their median and note in their legend entry
        # (beside the curves they would overlap), after the run's name
        assert [label.split(":")[0] for label in labels] == ["today", "2019 terms"]
        assert all(("median" in label) == (what == "survival") for label in labels)
        colors = {line.get_label().split(":")[0]: line.get_color()
                  for line in ax.get_lines() if line.get_label().split(":")[0] in runs}
        assert colors["today"] != colors["2019 terms"]
    ax = mcsim.plot_compare(runs, _ax(), what="survival")
    assert ax.get_xlim()[1] <= _horizon_end(base) + 1e-6
    lo, hi = mcsim.plot_compare(runs, _ax()).get_ylim()
    for r in runs.values():
        q = r.quantiles("cumulative_azure_spend", (5, 95)).value / plots.B
        assert lo <= np.nanmin(q[:, 0]) and np.nanmax(q[:, 1]) <= hi


def test_plot_compare_uses_conditioned_results_when_present(base, other):
    runs = {"obs": dataclasses.replace(base, conditioned=other), "plain": base}
    ax = mcsim.plot_compare(runs, _ax(), what="survival")
    # each legend entry: the run's name, then its median and note (overlaid curves)
    assert [label.split(":")[0] for label in _legend_labels(ax)] == \
        ["obs (conditioned)", "plain"]
    step = next(line for line in ax.get_lines()
                if line.get_label().startswith("obs (conditioned):"))
    s = np.asarray(step.get_ydata())
    full = np.append(1.0 - other.repayment.cdf, 1.0 - other.repayment.cdf[-1])
    np.testing.assert_allclose(s, full[:len(s)])


def test_the_report_charts_keep_their_titles_and_file_names(base, tmp_path):
    files = plots.write_plots(base, tmp_path)
    names = {f.name for f in files}
    assert {"fan_chart.png", "annual_azure_spend.png", "repayment_cdf.png",
            "credit_exhaustion_cdf.png"} <= names
    ax = _ax()
    plots.event_cdf(base, ax)
    assert "not yet repaid" in ax.get_title()
    assert "not yet repaid" in ax.get_ylabel()
