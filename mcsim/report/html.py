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

from ..layout import ANNUAL_FLOWS, HORIZON_TOTALS
from .format import _pkey, money_text
from .summary import REPAID

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
.headline td:nth-child(2){font-weight:600}.ci{color:#666;font-size:.9em}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em;max-height:30em}
.note{color:#555;font-size:.85em}
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

PLOTS = (("fan_chart.png", "Cumulative Azure spend: fan chart"),
         ("annual_azure_spend.png", "Azure spend by calendar year"),
         ("repayment_cdf.png", "When Microsoft is repaid"),
         ("credit_exhaustion_cdf.png", "When the Azure credits run out"),
         ("cap_reached_cdf.png", "When the revenue-share cap is reached"),
         ("commitment_met_cdf.png", "When Azure spend meets the commitment"),
         ("fan_chart_conditioned.png", "Cumulative Azure spend: prior vs conditioned"),
         ("repayment_survival_conditioned.png", "Not yet repaid: prior vs conditioned"))


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


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(summary: dict, images: dict[str, bytes]) -> str:
    """The page as one string (summary: :func:`mcsim.report.summary.summarize`)."""
    prov, grid = summary["provenance"], summary["grid"]
    cum, rep, cred = (summary["cumulative_azure_spend"], summary["repayment"],
                      summary["credit_exhaustion"])
    end = grid["horizon"]
    pcts = [_pkey(p) for p in summary["method"]["percentiles"]]
    headline = [
        [f"Cumulative Azure spend by {end}, median", _q(cum, "p50", -1)],
        ["... 5% / 95%", f"{_q(cum, pcts[0], -1)} / {_q(cum, pcts[-1], -1)}"],
        ["... mean", f"{money_text(cum['mean'][-1])} <span class=ci>"
                      f"{_pm_money(cum['mean_se'][-1])}</span>"],
        ["Microsoft repaid ($" + f"{summary['investment'] / 1e9:g}B), median month",
         _month(rep, "p50")],
        [f"P(not repaid by {end})", _probability(rep["probability_not_by_horizon"],
                                                 rep["probability_not_by_horizon_se"])],
        ["Azure credits exhausted, median month", _month(cred, "p50")],
        ["Paths (with a NaN or inf, left out)",
         f"{summary['paths']:,} ({summary['nonfinite']['paths']:,})"],
    ]
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
                    for name in HORIZON_TOTALS]
    events = [b for b in (rep, cred, summary.get("revenue_share_cap_reached"),
                          summary.get("azure_commitment_met")) if b is not None]
    month_rows = [[f"{p}% of paths by"] + [_month(b, f"p{p}") for b in events]
                  for p in (5, 25, 50, 75, 95) if f"p{p}" in rep["quantiles"]]
    month_rows.append(["not by the horizon"] + [
        _probability(b["probability_not_by_horizon"], b["probability_not_by_horizon_se"])
        for b in events])
    month_header = ["", "Microsoft repaid", "credits exhausted", "revenue-share cap reached",
                    "Azure commitment met"][:len(events) + 1]
    plots = "".join(
        f"<h3>{html.escape(title)}</h3><img alt=\"{html.escape(title)}\" "
        f"src=\"data:image/png;base64,{base64.b64encode(images[name]).decode()}\">"
        for name, title in PLOTS if name in images) or \
        "<p class=note>Plots were skipped (--no-plots).</p>"
    conditioned = _conditioned_section(summary, pcts)
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
widened to the histogram bins); &plusmn; is 1.96 standard errors. Money is in nominal US
dollars, undiscounted. <b>Repaid</b> means: {html.escape(REPAID)}. What the model computes
is described <a href="#model">at the end of this page</a>.</p>
<h2>Headline</h2>{_table(['', 'value'], headline)}
{conditioned}<h2>Plots</h2>{plots}
<h2>Annual flows (medians)</h2>
{_table(['year'] + [f.replace('_', ' ') for f in first_flows], annual_rows)}
{_more_flows(more_flows, more_rows)}
<h2>Totals at {html.escape(end)}</h2>
{_table([''] + [p[1:] + '%' for p in pcts] + ['mean'], horizon_rows)}
<h2>Months: repayment, credits, cap, commitment</h2>
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


def _more_flows(flows: list[str], rows: list[list[str]]) -> str:
    if not flows:
        return ""
    return ("<h3>Costs, profit and payments to Microsoft (medians)</h3>"
            + _table(['year'] + [f.replace('_', ' ') for f in flows], rows))


def _stock_text(x, unit: str) -> str:
    if x is None:
        return "n/a"
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
    rows = []
    for name, row in table["prior"].items():
        cells = [f"{row[k]:.4g}" for k in ("p5", "p50", "p95", "mean")]
        if cond:
            c = cond[name]
            cells += [f"{c[k]:.4g}" for k in ("p5", "p50", "p95", "mean")]
        rows.append([html.escape(name)] + cells)
    header = ["parameter", "p5", "p50", "p95", "mean"]
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


def _conditioned_section(summary: dict, pcts: list[str]) -> str:
    """Prior vs conditioned headline numbers, with the observations and the ESS."""
    cond = summary.get("conditioned")
    if cond is None:
        return ""
    end = summary["grid"]["horizon"]
    obs_rows = [[html.escape(o["name"]), html.escape(o["flow"].replace("_", " ")),
                 f"{html.escape(o['start'])} .. {html.escape(o['end'])}",
                 f"{money_text(o['value'])} &plusmn; {money_text(o['sd'])}"]
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


def write_html(summary: dict, out: Path) -> Path:
    """report.html in ``out``, embedding the PNGs written there."""
    images = {name: (out / name).read_bytes() for name, _ in PLOTS if (out / name).exists()}
    path = out / "report.html"
    path.write_text(render(summary, images), encoding="utf-8")
    return path
