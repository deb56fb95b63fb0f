"""``report.html``: one self-contained file with a run's headline numbers and their error
bars, its plots (PNG, inline as data URIs), its tables and its provenance.

No network: no external script, style, font or image; it opens in any browser, offline,
and can be mailed as it is. A few lines of inline script check, on load, that every plot
decoded and record any script error in the page (``tests/test_html_report.py`` reads them
back from headless Chromium).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from ..events import table as events_table
from ..layout import ALL_HORIZON_TOTALS, ANNUAL_FLOWS
from .format import _pkey, money_text
from .headline import figures_text
from .summary import REPAID

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
.headline td:nth-child(2),#headline td:nth-child(2){font-weight:600}
tr.item td{background:#f4f8ff}.ci{color:#666;font-size:.9em}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em;max-height:30em}
.note{color:#555;font-size:.85em}
tr.top td{background:#fff6e5}.flag{color:#b00000;font-weight:600}
"""

SCRIPT = """
window.mcsimErrors = [];
window.addEventListener('error', function (e) {
  window.mcsimErrors.push(String(e.message || e.type));
}, true);
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
  document.body.setAttribute('data-errors', JSON.stringify(window.mcsimErrors));
});
"""

def plots_shown() -> tuple[tuple[str, str], ...]:
    """The report's images in page order, with their captions (one per event of the
    event table; an image a run did not draw is left out)."""
    return (("fan_chart.png", "Cumulative Azure spend: fan chart"),
            ("annual_azure_spend.png", "Azure spend by calendar year"),
            *((f"{e.name}_cdf.png", e.caption) for e in events_table(None)),
            *_LATER_PLOTS)


_LATER_PLOTS = (("fan_chart_conditioned.png", "Cumulative Azure spend: prior vs conditioned"),
                ("repayment_survival_conditioned.png", "Not yet repaid: prior vs conditioned"),
                ("parameter_shift.png", "Posterior: the parameters the observations moved most"),
                ("smc_diagnostics.png", "SMC diagnostics: temperature, ESS and acceptance by step"),
                ("posterior_predictive.png", "Posterior predictive check of every observation"))
#: the SMC posterior's plots: shown in the conditioned section, not under "Plots"
SMC_PLOTS = ("parameter_shift.png", "smc_diagnostics.png", "posterior_predictive.png")


def _q(block, p, i=None) -> str:
    q = block["quantiles"][p]
    pick = (lambda k: q[k][i]) if i is not None else (lambda k: q[k])
    beyond = pick("beyond_range") if "beyond_range" in q else None
    value = {"above": math.inf, "below": -math.inf}.get(beyond, pick("value"))
    low = pick("ci95_low")
    high = pick("ci95_high")
    # a null interval end is open: too few paths to bound it, or beyond the range
    low = "&minus;&infin;" if low is None else money_text(low)
    high = "&infin;" if high is None else money_text(high)
    return f"{money_text(value)} <span class=ci>[{low} .. {high}]</span>"


def _pm_money(se) -> str:
    """The 95% half-width of a mean, or n/a where its standard error is undefined."""
    return f"&plusmn; {money_text(1.96 * se)}" if se is not None else "&plusmn; n/a"


def _probability(p, se) -> str:
    """A probability with its 95% half-width; n/a where undefined (no effective paths)."""
    if p is None:
        return "n/a"
    half = f"{1.96 * se:.3f}" if se is not None else "n/a"
    return f"{p:.3f} <span class=ci>&plusmn; {half}</span>"


def _month(block, p) -> str:
    q = block["quantiles"][p]
    return (f"{html.escape(q['label'])} <span class=ci>[{html.escape(q['ci95_low_label'])} "
            f".. {html.escape(q['ci95_high_label'])}]</span>")


def _table(header: list[str], rows: list[list[str]], row_class: list[str] | None = None,
           table_id: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    classes = row_class or [""] * len(rows)
    body = "".join((f"<tr class={c}>" if c else "<tr>") + "".join(f"<td>{x}</td>" for x in r)
                   + "</tr>" for r, c in zip(rows, classes, strict=True))
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><tr>{head}</tr>{body}</table>"


def _image(name: str, title: str, images: dict[str, bytes]) -> str:
    return (f"<h3>{html.escape(title)}</h3><img alt=\"{html.escape(title)}\" "
            f"src=\"data:image/png;base64,{base64.b64encode(images[name]).decode()}\">")


def render(summary: dict, images: dict[str, bytes]) -> str:
    """The page as one string (summary: :func:`mcsim.report.summary.summarize`)."""
    prov, grid = summary["provenance"], summary["grid"]
    cum, rep, cred = (summary["cumulative_azure_spend"], summary["repayment"],
                      summary["credit_exhaustion"])
    end = grid["horizon"]
    pcts = [_pkey(p) for p in summary["method"]["percentiles"]]
    detail = [
        [f"Cumulative Azure spend by {end}, mean", f"{money_text(cum['mean'][-1])} "
         f"<span class=ci>{_pm_money(cum['mean_se'][-1])}</span>"],
        ["Azure credits exhausted, median month", _month(cred, "p50")],
        ["Paths (with a NaN or inf, left out)",
         f"{summary['paths']:,} ({summary['nonfinite']['paths']:,})"],
    ]
    if "headline" not in summary:  # a summary written before the headline block
        detail[:0] = [
            [f"Cumulative Azure spend by {end}, median", _q(cum, "p50", -1)],
            ["... 5% / 95%", f"{_q(cum, pcts[0], -1)} / {_q(cum, pcts[-1], -1)}"],
            ["Microsoft repaid ($" + f"{summary['investment'] / 1e9:g}B), median month",
             _month(rep, "p50")],
            [f"P(not repaid by {end})", _probability(rep["probability_not_by_horizon"],
                                                     rep["probability_not_by_horizon_se"])]]
    annual = summary["annual"]
    first_flows = [f for f in ANNUAL_FLOWS[:4] if f in annual]
    more_flows = [f for f in ANNUAL_FLOWS[4:] if f in annual]
    annual_rows = [[html.escape(year)] + [_q(annual[f], "p50", y) for f in first_flows]
                   for y, year in enumerate(annual["years"])]
    more_rows = [[html.escape(year)] + [_q(annual[f], "p50", y) for f in more_flows]
                 for y, year in enumerate(annual["years"])]
    horizon_rows = [[name.replace("_", " ")] + [_q(summary["horizon"][name], p) for p in pcts]
                    + [f"{money_text(summary['horizon'][name]['mean'])} <span class=ci>"
                       f"{_pm_money(summary['horizon'][name]['mean_se'])}</span>"]
                    for name in ALL_HORIZON_TOTALS if name in summary["horizon"]]
    # every event of the table that the summary holds, in the table's order
    shown = [e for e in events_table(None) if e.summary_key in summary]
    events = [summary[e.summary_key] for e in shown]
    month_rows = [[f"{p}% of paths by"] + [_month(b, f"p{p}") for b in events]
                  for p in (5, 25, 50, 75, 95) if f"p{p}" in rep["quantiles"]]
    month_rows.append(["not by the horizon"] + [
        _probability(b["probability_not_by_horizon"], b["probability_not_by_horizon_se"])
        for b in events])
    month_header = [""] + [e.label for e in shown]
    plots = "".join(_image(name, title, images) for name, title in plots_shown()
                    if name in images and name not in SMC_PLOTS) or \
        "<p class=note>Plots were skipped (--no-plots).</p>"
    conditioned = _conditioned_section(summary, pcts, images)
    prov_rows = [[html.escape(k), html.escape(str(prov[k]))] for k in
                 ("mcsim_version", "jax_version", "device", "num_devices", "num_processes",
                  "dtype", "paths", "seed", "chunk_size", "kernel_options", "run_seconds",
                  "config_path", "config_sha256", "created_utc") if k in prov]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mcsim report: {html.escape(prov.get('config_path') or 'run')}</title>
<style>{STYLE}</style><script>{SCRIPT}</script></head>
<body>
<h1>mcsim: OpenAI's Azure spend and Microsoft's repayment</h1>
<p class=note>{summary['paths']:,} sampled futures, {html.escape(grid['start'])} to
{html.escape(end)}, seed {prov['seed']}. Brackets are 95% intervals (order statistics
widened to the histogram bins); &plusmn; is 1.96 standard errors; 90% is the band from the
5% to the 95% quantile over paths. Money is in nominal US dollars, undiscounted unless marked
as a present value. <b>Repaid</b> means: {html.escape(REPAID)}. What the model computes
is described <a href="#model">at the end of this page</a>.</p>
<h2>Headline</h2>{_headline_table(summary.get("headline"))}
{"<h3>Detail</h3>" if "headline" in summary else ""}{_table(['', 'value'], detail)}
{conditioned}<h2>Plots</h2>{plots}
<h2>Annual flows (medians)</h2>
{_table(['year'] + [f.replace('_', ' ') for f in first_flows], annual_rows)}
{_more_flows(more_flows, more_rows)}
<h2>Totals at {html.escape(end)}</h2>
{_table([''] + [p[1:] + '%' for p in pcts] + ['mean'], horizon_rows)}
<h2>Months: {html.escape(', '.join(e.label for e in shown))}</h2>
{_table(month_header, month_rows)}
{_stocks_section(summary)}{_facts_section(summary)}{_parameters_section(summary)}
<h2>Provenance</h2>{_table(['', ''], prov_rows)}
<p class=note>Run it again from summary.json alone: <code>mcsim reproduce summary.json --out
DIR</code>.</p>
<h3>Config</h3><pre>{html.escape(prov.get('config_text', ''))}</pre>
{_model_section()}
<script type="application/json" id="summary-method">{html.escape(json.dumps(
        summary['method']))}</script>
</body></html>
"""


def _headline_table(h: dict | None) -> str:
    """summary.json's headline block (:func:`mcsim.report.headline.headline`) as a table:
    each item's title, its rows, its note; a conditioned run's posterior first, the prior
    beside it."""
    if h is None:
        return ""
    posterior = h["lead"] == "posterior"

    def cell(kind: str, figures) -> str:
        return figures_text(kind, figures, esc=html.escape,
                            wrap=lambda s: f"<span class=ci>{s}</span>", sep="<br>")

    rows, classes = [], []
    width = 3 if posterior else 2
    for item in h["items"]:
        rows.append([f"<b>{html.escape(item['title'])}</b>"] + [""] * (width - 1))
        classes.append("item")
        for row in item["rows"]:
            own = {k: v for k, v in row.items() if k != "prior"}
            cells = [cell(row["kind"], own)]
            if posterior:
                cells.append(cell(row["kind"], row.get("prior")))
            rows.append([f"&nbsp;&nbsp;{html.escape(row['label'])}"] + cells)
            classes.append("")
        if item["note"]:
            rows.append([f"&nbsp;&nbsp;<span class=note>{html.escape(item['note'])}</span>"]
                        + [""] * (width - 1))
            classes.append("")
    header = ["", "posterior", "prior"] if posterior else ["", "value"]
    n = h["observations"] if posterior else 0
    lead = (f"<p class=note>Conditioned on {n} observation{'s' if n != 1 else ''} (effective "
            f"sample size {h['effective_sample_size']:,.0f}): the posterior leads, the prior "
            "beside it.</p>" if posterior else "")
    return lead + _table(header, rows, classes, table_id="headline")


def _more_flows(flows: list[str], rows: list[list[str]]) -> str:
    if not flows:
        return ""
    return ("<h3>Costs, profit and payments to Microsoft (medians)</h3>"
            + _table(['year'] + [f.replace('_', ' ') for f in flows], rows))


def _stock_text(x, unit: str) -> str:
    if x is None:
        return "n/a"
    if unit.startswith("$ (negative"):  # cash: dollars, signed
        return money_text(x)
    if unit.startswith("$"):
        return f"${x:.3g}"
    if unit.startswith("fraction"):
        return f"{x:.1%}"
    return f"{x:.3g}"


def _stocks_section(summary: dict) -> str:
    stocks = summary.get("stocks")
    if not stocks:
        return ""
    names = [n for n in stocks if isinstance(stocks[n], dict) and "quantiles" in stocks[n]]
    rows = []
    for y, year in enumerate(stocks["years"]):
        cells = []
        for n in names:
            q = stocks[n]["quantiles"]["p50"]
            cells.append(_stock_text(q["value"][y], stocks["units"][n]))
        rows.append([html.escape(year)] + cells)
    header = ["year end"] + [f"{n.replace('_', ' ')} ({stocks['units'][n]})" for n in names]
    return f"<h2>Stocks at each year's end (medians)</h2>{_table(header, rows)}"


def _fact_value(x: float, unit: str) -> str:
    return money_text(x) if unit == "$" else f"{x:.3g}"


def _facts_section(summary: dict) -> str:
    facts = summary.get("facts")
    if not facts:
        return ""
    rows = []
    for r in facts["rows"]:
        m, u = r["model"], r["unit"]
        band = "25-75" if r["firm"] else "5-95"
        rows.append([html.escape(r["name"]) + (" (firm)" if r["firm"] else ""),
                     _fact_value(r["value"], u), html.escape(r["source"]),
                     f"{_fact_value(m['p50'], u)} <span class=ci>[{_fact_value(m['p5'], u)} "
                     f".. {_fact_value(m['p95'], u)}]</span>",
                     f"{r['percentile']:.0f} <span class=ci>&plusmn; "
                     f"{1.96 * r['percentile_se']:.0f} (expected {band})</span>"])
    return ("<h2>Facts vs model</h2><p class=note>" + html.escape(facts["rule"]) + "</p>"
            + _table(["fact", "value", "source (calibration.md)", "model median [5%..95%]",
                      "percentile"], rows))


def _parameters_section(summary: dict) -> str:
    table = summary.get("parameters")
    if not table:
        return ""
    cond = table.get("conditioned")
    units = table.get("units") or {}  # absent in a summary.json from before units
    rows = []
    for name, row in table["prior"].items():
        cells = [f"{row[k]:.4g}" for k in ("p5", "p50", "p95", "mean")]
        if cond:
            c = cond[name]
            cells += [f"{c[k]:.4g}" for k in ("p5", "p50", "p95", "mean")]
        rows.append([html.escape(name), html.escape(units.get(name, ""))] + cells)
    header = ["parameter", "unit", "p5", "p50", "p95", "mean"]
    if cond:
        header += ["conditioned p5", "p50", "p95", "mean"]
    return (f"<h2>Parameters as drawn</h2><p class=note>From the run's first "
            f"{table['paths']:,} paths.</p>{_table(header, rows)}")


def _model_section() -> str:
    """docs/model.md, when this is a source checkout, as the page's own description of the
    model (so the page links to nothing outside itself)."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "model.md"
    text = doc.read_text(encoding="utf-8") if doc.exists() else (
        "The model's description is docs/model.md in the mcsim repository.")
    return (f'<h2 id="model">The model</h2><details><summary>What mcsim computes '
            f'(docs/model.md)</summary><pre>{html.escape(text)}</pre></details>')


def _conditioned_section(summary: dict, pcts: list[str],
                         images: dict[str, bytes] | None = None) -> str:
    """Prior vs conditioned headline numbers, with the observations and the ESS; for an SMC
    posterior also each run's spread, the tempering diagnostics, the posterior of every
    parameter, the posterior predictive check and their plots."""
    cond = summary.get("conditioned")
    if cond is None:
        return ""
    if "smc" in cond:
        return _smc_section(summary, cond, pcts, images or {})
    end = summary["grid"]["horizon"]
    units = (summary.get("stocks") or {}).get("units", {})
    obs_rows = [[html.escape(o["name"]), html.escape(o["flow"].replace("_", " ")),
                 f"{html.escape(o['start'])} .. {html.escape(o['end'])}",
                 f"{_obs_value(o['value'], o['flow'], units)} &plusmn; "
                 f"{_obs_value(o['sd'], o['flow'], units)}"]
                for o in cond["observations"]]
    rows = []
    for title, key in ((f"Cumulative Azure spend by {end}, median", None),
                       ("Microsoft repaid, median month", "repayment")):
        cells = []
        for block in (summary, cond):
            cells.append(_q(block["cumulative_azure_spend"], "p50", -1) if key is None
                         else _month(block[key], "p50"))
        rows.append([title] + cells)
    p_prior, p_cond = (b["repayment"] for b in (summary, cond))
    rows.append([f"P(not repaid by {end})"] + [
        _probability(b["probability_not_by_horizon"], b["probability_not_by_horizon_se"])
        for b in (p_prior, p_cond)])
    warning = (f"<p class=note><b>Warning:</b> {html.escape(cond['warning'])}</p>"
               if cond.get("warning") else "")
    return (f"<h2>Conditioned on the observations</h2>"
            f"{_table(['observation', 'flow', 'months', 'value'], obs_rows)}"
            f"<p class=note>Effective sample size {cond['effective_sample_size']:,.0f} of "
            f"{cond['paths']:,} paths ({cond['ess_fraction']:.1%}).</p>{warning}"
            f"{_table(['', 'prior', 'conditioned'], rows)}")


def _obs_value(x, series: str, units: dict) -> str:
    """An observed value: dollars for flows, the stock's own unit for a stock."""
    if x is None:
        return "n/a"
    if series in units and not units[series].startswith("$"):
        return f"{x:.3g}"
    return f"${x:.3g}" if series in units else money_text(x)


def _months(o: dict) -> str:
    """An observation's months: ``2024-01 .. 2024-12``, or the one month of a stock."""
    if o["start"] == o["end"]:
        return html.escape(o["start"])
    return f"{html.escape(o['start'])} .. {html.escape(o['end'])}"


def _series(series: str) -> str:
    """``compute_spend+other_opex`` as ``compute spend + other opex``."""
    return html.escape(series.replace("+", " + ").replace("_", " "))


def _g(x, fmt: str = ".4g") -> str:
    return "n/a" if x is None else format(x, fmt)


def _pm(se, unit: str = "", fmt: str = ".3g", text=None) -> str:
    """The 95% half-width from a Monte Carlo standard error (the runs' spread), as
    ``format(half, fmt) + unit`` or ``text(half)``."""
    if se is None:
        return "<span class=ci>&plusmn; n/a</span>"
    half = 1.96 * se
    return (f"<span class=ci>&plusmn; "
            f"{text(half) if text else format(half, fmt) + unit}</span>")


def _error_text(o: dict) -> str:
    text = "Student t, " + _g(o["dof"], "g") + " dof" if o["error"] == "student_t" \
        else "normal"
    bias = o.get("bias")
    if isinstance(bias, dict):
        params = ", ".join(f"{k} {v:.3g}" for k, v in bias["params"].items())
        text += f"; bias {bias['kind']} ({params})"
    elif bias is not None:
        text += f"; bias x{bias:g}"
    return html.escape(text)


def _smc_headline(summary: dict, cond: dict, pcts: list[str]) -> str:
    """Prior vs posterior: spend at the horizon (median and 90% band), the repayment and
    cap months' medians and P(commitment met), each posterior value with the 95% half-width
    of its Monte Carlo error from the runs' spread (a month median: its pooled 95% interval
    and the month resolution instead), and each run's own value."""
    end = summary["grid"]["horizon"]
    lo, hi = pcts[0], pcts[-1]
    se, runs = cond["per_run_se"], cond["per_run"]

    def spend(block, err: str = "") -> str:
        q = block["cumulative_azure_spend"]["quantiles"]
        return (f"{money_text(q['p50']['value'][-1])} {err} <span class=ci>"
                f"[{lo[1:]}%: {money_text(q[lo]['value'][-1])} .. {hi[1:]}%: "
                f"{money_text(q[hi]['value'][-1])}]</span>")

    # a month median has no spread error: it is a whole month, with its pooled interval
    resolution = html.escape(f"resolution {se.get('month_resolution', '1 month')}")

    def month(block, key: str) -> str:
        return f"{_month(block[key], 'p50')} <span class=ci>({resolution})</span>"

    def met(block, err: str | None = None) -> str:
        b = block["azure_commitment_met"]
        p, s = b["probability_not_by_horizon"], b["probability_not_by_horizon_se"]
        if p is None:
            return "n/a"
        if err is None:
            return _probability(1.0 - p, s)
        return f"{1.0 - p:.3f} {err}"

    rows = [
        [f"Cumulative Azure spend by {end}, median [{lo[1:]}% .. {hi[1:]}%]", spend(summary),
         spend(cond, _pm(se["cumulative_azure_spend_p50"], text=money_text)),
         " / ".join(money_text(r["cumulative_azure_spend_p50"]) for r in runs)],
        ["Microsoft repaid, median month", _month(summary["repayment"], "p50"),
         month(cond, "repayment"),
         " / ".join(html.escape(r["repayment_p50_label"]) for r in runs)],
        ["Revenue-share cap reached, median month",
         _month(summary["revenue_share_cap_reached"], "p50"),
         month(cond, "revenue_share_cap_reached"),
         " / ".join(html.escape(r["revenue_share_cap_reached_p50_label"]) for r in runs)],
        ["P(Azure commitment met by spend)", met(summary),
         met(cond, _pm(se["p_azure_commitment_met"], "", ".3f")),
         " / ".join(f"{r['p_azure_commitment_met']:.3f}" for r in runs)],
    ]
    return _table(["", "prior", "posterior (\u00b1 from the runs' spread; a month: its "
                   "95% interval)",
                   "each run (its own particles)"], rows, table_id="smc-headline")


def _smc_diagnostics(cond: dict, seconds: list) -> str:
    """The SMC runs (steps, moves, the last step's mixing diagnostic and acceptance, time,
    evidence) and every tempering step of run 1, with its moves and mixing diagnostic
    (:func:`mcsim.engine.smc.mixing_correlation`; a summary of a version without them
    shows n/a)."""
    diag = cond["smc"]
    n = diag["particles"]
    seconds = list(seconds) + [None] * (len(diag["runs_detail"]) - len(seconds))

    def per_step(run: dict, key: str) -> list:
        return run.get(key) or [None] * run["steps"]

    def last(values: list):
        return values[-1] if values else None

    run_rows = [[f"run {r['run'] + 1}", str(r["steps"]),
                 _g(sum(per_step(r, "moves")) if r.get("moves") else None, ","),
                 _g(last(per_step(r, "mixing")), ".2f"), _g(last(r["acceptance"]), ".2f"),
                 _g(t, ".3g"), _g(r.get("log_evidence"), ".4g"),
                 f"{r['likelihood_evaluations']:,}"]
                for r, t in zip(diag["runs_detail"], seconds, strict=False)]
    first = diag["runs_detail"][0]
    moves, mixing = per_step(first, "moves"), per_step(first, "mixing")
    step_rows = [[str(k + 1), _g(first["temperature"][k], ".4g"),
                  _g(first["ess"][k], ",.0f"),
                  _g(None if first["ess"][k] is None else first["ess"][k] / n, ".2f"),
                  f"{first['distinct_after_resampling'][k]:,}",
                  _g(moves[k], ","), _g(mixing[k], ".2f"),
                  _g(first["acceptance"][k], ".2f"), _g(first["rho"][k], ".3f")]
                 for k in range(first["steps"])]
    threshold = diag.get("mixing_threshold") or 0.0
    lo, hi = diag.get("acceptance_band", (0.2, 0.4))  # a summary before bands: pCN's
    stop = (f", stopped early once the mixing diagnostic falls below {threshold:g}"
            if threshold > 0 else "")
    return (f'<h3 id="smc-diagnostics">SMC diagnostics</h3><p class=note>{diag["runs"]} '
            f"independent runs of {n:,} particles, moved together (in groups of up to "
            "65,536 particles); each tempering step keeps an ESS of "
            f"{diag['ess_fraction']:g} of them, then up to {diag['moves']} "
            f"{html.escape(diag.get('move', 'pcn'))} moves{stop} (acceptance steered into "
            f"{lo:g}-{hi:g}); latent dimension {diag['latent_dimension']:,}. Mixing: how much "
            "the particles still remember where the step's moves started (1: nothing "
            "moved, ~0: forgotten).</p>"
            + _table(["run", "steps", "moves", "last step's mixing", "final acceptance",
                      "seconds", "log evidence", "likelihood evaluations"], run_rows,
                     table_id="smc-runs")
            + "<p class=note>Every tempering step of run 1:</p>"
            + _table(["step", "temperature", "ESS", "ESS / particles",
                      "distinct after resampling", "moves", "mixing", "acceptance",
                      "step size rho"],
                     step_rows, table_id="smc-steps"))


#: the posterior table's rows highlighted (the parameters shifted most)
TOP_SHIFTED = 10


def _posterior_parameters(cond: dict) -> str:
    rows = sorted(cond["posterior_parameters"],
                  key=lambda r: -abs(r["shift_in_prior_sd"])
                  if r["shift_in_prior_sd"] is not None else 0.0)
    cells = [[html.escape(r["parameter"]), _g(r["prior_mean"]), _g(r["prior_sd"]),
              f"{_g(r['prior_p5'], '.3g')} .. {_g(r['prior_p95'], '.3g')}",
              f"{_g(r['posterior_mean'])} {_pm(r['posterior_mean_se'], fmt='.2g')}",
              _g(r["posterior_sd"]),
              f"{_g(r['posterior_p5'], '.3g')} .. {_g(r['posterior_p95'], '.3g')}",
              _g(r["shift_in_prior_sd"], "+.2f"), _g(r["sd_ratio"], ".2f")] for r in rows]
    classes = ["top" if k < TOP_SHIFTED and r["shift_in_prior_sd"] is not None else ""
               for k, r in enumerate(rows)]
    return (f'<h3 id="posterior-parameters">Posterior of the parameters</h3><p class=note>'
            f"Every drawn parameter (and drawn bias factor), prior vs posterior, sorted by "
            f"the size of the shift of its mean in prior standard deviations; the "
            f"{TOP_SHIFTED} shifted most are highlighted. &plusmn;: 1.96 x the Monte Carlo "
            f"error of the posterior mean (the runs' spread).</p>"
            + _table(["parameter", "prior mean", "prior sd", "prior 5% .. 95%",
                      "posterior mean", "posterior sd", "posterior 5% .. 95%",
                      "shift (prior sds)", "sd ratio"], cells, classes,
                     table_id="posterior-parameters-table"))


def _posterior_predictive(cond: dict, units: dict) -> str:
    rows, classes = [], []
    for r in cond["posterior_predictive"]:
        def v(x, r=r):
            return _obs_value(x, r["series"], units)
        z = r["posterior_z"]
        bad = z is not None and abs(z) >= 3
        rows.append([html.escape(r["observation"]), _series(r["series"]), _months(r),
                     f"{v(r['value'])} &plusmn; {v(r['sd'])}",
                     f"{v(r['prior_p50'])} <span class=ci>[{v(r['prior_p5'])} .. "
                     f"{v(r['prior_p95'])}]</span>",
                     f"{v(r['posterior_p50'])} <span class=ci>[{v(r['posterior_p5'])} .. "
                     f"{v(r['posterior_p95'])}]</span>",
                     (f"<span class=flag>{z:+.2f} &#9888;</span>" if bad else _g(z, "+.2f"))])
        classes.append("miss" if bad else "")
    missed = sum(c == "miss" for c in classes)
    note = (f" <span class=flag>{missed} observation{'s' if missed > 1 else ''} with |z| "
            f"&ge; 3: the posterior does not reproduce {'them' if missed > 1 else 'it'}."
            f"</span>" if missed else "")
    return ('<h3 id="posterior-predictive">Posterior predictive check</h3><p class=note>'
            "Each observation with its error, and the model's value of it (bias included), "
            "median [5% .. 95%], under the prior and the posterior; z = (value - posterior "
            "mean) / sqrt(posterior variance + error variance)." + note + "</p>"
            + _table(["observation", "series", "months", "value", "prior", "posterior", "z"],
                     rows, classes, table_id="posterior-predictive-table"))


def _smc_section(summary: dict, cond: dict, pcts: list[str], images: dict[str, bytes]) -> str:
    units = (summary.get("stocks") or {}).get("units", {})
    obs_rows = [[html.escape(o["name"]), _series(o["flow"]), _months(o),
                 f"{_obs_value(o['value'], o['flow'], units)} &plusmn; "
                 f"{_obs_value(o['sd'], o['flow'], units)}", _error_text(o)]
                for o in cond["observations"]]
    warning = (f"<p class=note><b>Warning:</b> {html.escape(cond['warning'])}</p>"
               if cond.get("warning") else "")
    plots = "".join(_image(name, title, images) for name, title in plots_shown()
                    if name in SMC_PLOTS and name in images)
    return (f"<h2>Conditioned on the observations</h2>"
            f"{_table(['observation', 'series', 'months', 'value', 'error'], obs_rows)}"
            f"<p class=note>Tempered sequential Monte Carlo: {cond['runs']} independent runs "
            f"of {cond['particles']:,} particles, each final particle forecast as one path "
            f"({cond['paths']:,} pooled paths, worth an effective sample size of "
            f"{cond['effective_sample_size']:,.0f}, {cond['ess_fraction']:.1%}). Posterior "
            f"&plusmn; is 1.96 x the Monte Carlo error from the spread of the independent "
            f"runs (sd of the runs' values / sqrt({cond['runs']})).</p>{warning}"
            f"<h3>Prior vs posterior</h3>{_smc_headline(summary, cond, pcts)}"
            f"{_smc_diagnostics(cond, summary['provenance'].get('smc_run_seconds', []))}"
            f"{_posterior_parameters(cond)}"
            f"{_posterior_predictive(cond, units)}{plots}")


def write_html(summary: dict, out: Path) -> Path:
    """report.html in ``out``, embedding the PNGs written there."""
    images = {name: (out / name).read_bytes() for name, _ in plots_shown()
              if (out / name).exists()}
    path = out / "report.html"
    path.write_text(render(summary, images), encoding="utf-8")
    return path
