"""Files mcsim reads back (issue 26, item 5): summary.json (``compare``, ``reproduce``) and
the output directory's manifest, ``.mcsim-output.json``. Malformed variants are generated
(wrong top-level type, missing keys, wrong-typed values, truncated JSON, non-UTF-8 bytes,
deep nesting; for the manifest also paths leading out of the directory, a FIFO, a
directory): each gets exit status 2 and one line naming the file, what is wrong and the
expected form; no traceback, nothing written, and no file mcsim did not write deleted.
Also ``compare --names`` (item 7): an empty or repeated label is refused."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from helpers import CONFIGS_DIR

from mcsim import ConfigError
from mcsim.cli import main
from mcsim.report import outdir

BASE = str(CONFIGS_DIR / "amendment_2026.toml")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    rep = tmp_path_factory.mktemp("read_back") / "rep"
    # the runs of test_output_dirs and test_out_precheck: one compiled kernel for all
    assert main(["run", BASE, "--paths", "2048", "--no-plots", "--no-progress",
                 "--out", str(rep)]) == 0
    return rep


@pytest.fixture(scope="module")
def summary(report) -> dict:
    return json.loads((report / "summary.json").read_text())


def _one_line(capsys, *needles: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("mcsim: error: ") and "Traceback" not in captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _get(doc: dict, dotted: str):
    for part in dotted.split("."):
        doc = doc[part]
    return doc


def _with(doc: dict, dotted: str, value=None, *, delete: bool = False) -> dict:
    out = copy.deepcopy(doc)
    *parents, last = dotted.split(".")
    node = out
    for part in parents:
        node = node[part]
    if delete:
        del node[last]
    else:
        node[last] = value
    return out


#: every key ``compare`` reads (each required: deleting it must be refused)
COMPARED = [
    "schema", "grid", "grid.horizon", "paths",
    "cumulative_azure_spend", "cumulative_azure_spend.months",
    "cumulative_azure_spend.mean", "cumulative_azure_spend.mean_se",
    "cumulative_azure_spend.quantiles", "cumulative_azure_spend.quantiles.p5",
    "cumulative_azure_spend.quantiles.p50.value",
    "cumulative_azure_spend.quantiles.p50.ci95_low",
    "cumulative_azure_spend.quantiles.p95.ci95_high",
    "repayment", "repayment.probability_not_by_horizon",
    "repayment.probability_not_by_horizon_se", "repayment.quantiles",
    "repayment.quantiles.p50", "repayment.quantiles.p50.month",
    "repayment.quantiles.p50.ci95_low", "repayment.quantiles.p50.ci95_high",
    "repayment.cdf", "repayment.cdf.months", "repayment.cdf.probability",
    "repayment.cdf.se", "horizon", "horizon.microsoft_net",
    "horizon.microsoft_net.mean", "horizon.deepest_cumulative_loss.mean_se",
]
#: each is wrong wherever compare reads a value (a month, a number, a list or a table)
WRONG = ["x", [], {}, True]


def _summary_variants(good: dict) -> list[tuple[str, bytes, str]]:
    """(id, file bytes, a text the error must hold) for every malformed summary.json."""
    text = json.dumps(good)
    out = [(f"top-{type(v).__name__}", json.dumps(v).encode(), "<document>")
           for v in ([1, 2], "summary", 3.5, None)]
    out += [(f"truncated-{n}", text[:n].encode(), "valid JSON")
            for n in (0, 1, 100, len(text) // 2, len(text) - 1)]
    out += [("non-utf8", text[:40].encode() + b"\xff\xfe" + text[40:].encode(), "UTF-8"),
            ("nested", b"[" * 100_000 + b"]" * 100_000, "<")]
    out += [(f"missing-{k}", json.dumps(_with(good, k, delete=True)).encode(),
             f"{k} is missing") for k in COMPARED]
    # a table where a value is read names the key inside it that is missing
    out += [(f"wrong-{k}-{type(v).__name__}", json.dumps(_with(good, k, v)).encode(),
             k if v == {} else f"{k} = ") for k in COMPARED for v in WRONG]
    months = good["cumulative_azure_spend"]["months"]
    out.append(("short-series", json.dumps(_with(good, "cumulative_azure_spend.mean",
                                                 [1.0] * (len(months) - 1))).encode(),
                "one value per month"))
    out.append(("conditioned-garbage",
                json.dumps(_with(good, "conditioned", {"repayment": 1})).encode(),
                "conditioned.cumulative_azure_spend is missing"))
    return out


def test_compare_refuses_every_malformed_summary_in_one_line(report, summary, tmp_path,
                                                             capsys):
    variants = _summary_variants(summary)
    assert len(variants) > 150
    for i, (name, data, needle) in enumerate(variants):
        bad = tmp_path / f"run{i}"
        bad.mkdir()
        (bad / "summary.json").write_bytes(data)
        capsys.readouterr()
        assert main(["compare", str(report), str(bad)]) == 2, name
        _one_line(capsys, str(bad / "summary.json"), needle)
    assert main(["compare", str(report), str(report / "summary.json")]) == 0  # a file works


PROVENANCE_VARIANTS = [
    ("provenance.config_text", 5), ("provenance.config_text", None),
    ("provenance.config_resolved", "x"), ("provenance.config_resolved", [1]),
    ("provenance.config_resolved", {"deal": {"investment": {"__float__": "abc"}}}),
    ("provenance.config_sha256", 5), ("provenance.paths", "x"), ("provenance.paths", 0),
    ("provenance.paths", True), ("provenance.seed", -1), ("provenance.seed", 1.5),
    ("provenance.dtype", "float16"), ("provenance.config_path", 3), ("provenance", []),
    ("provenance", "x"),
]


def test_reproduce_refuses_every_malformed_summary_in_one_line(summary, tmp_path, capsys):
    variants = [(f"{k}={v!r}", json.dumps(_with(summary, k, v)).encode(), k)
                for k, v in PROVENANCE_VARIANTS]
    variants += [(f"missing-{k}", json.dumps(_with(summary, k, delete=True)).encode(),
                  f"{k} is missing")
                 for k in ("provenance", "provenance.config_text", "provenance.paths",
                           "provenance.config_resolved", "provenance.dtype")]
    variants += [(n, d, t) for n, d, t in _summary_variants(summary)
                 if n.startswith(("top-", "truncated-", "non-utf8", "nested"))]
    tampered = _with(summary, "provenance.config_text", "x = 1")
    variants.append(("tampered", json.dumps(tampered).encode(), "config_sha256"))
    resolved = _with(summary, "provenance.config_resolved.deal.investment", -1.0)
    variants.append(("bad-config", json.dumps(resolved).encode(), "deal.investment = -1.0"))
    out = tmp_path / "again"
    for i, (name, data, needle) in enumerate(variants):
        bad = tmp_path / f"summary{i}.json"
        bad.write_bytes(data)
        capsys.readouterr()
        assert main(["reproduce", str(bad), "--out", str(out)]) == 2, name
        _one_line(capsys, str(bad), needle)
        assert not out.exists()


# --- the output directory's manifest ------------------------------------------------------

def _manifest_variants() -> list[tuple[str, bytes | str]]:
    good = {"format": outdir.MANIFEST_FORMAT, "files": ["a.txt"]}

    def doc(**changes) -> bytes:
        d = {**good, **changes}
        return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()

    out: list[tuple[str, bytes | str]] = [
        (f"top-{type(v).__name__}", json.dumps(v).encode()) for v in ([], "x", 1, None)]
    out += [("missing-format", doc(format=...)), ("missing-files", doc(files=...)),
            ("format-number", doc(format=1)), ("format-other", doc(format="mcsim.output/9")),
            ("files-string", doc(files="a.txt")), ("files-table", doc(files={"a": 1})),
            ("files-numbers", doc(files=[1])), ("files-null", doc(files=[None])),
            ("files-empty-name", doc(files=[""])),
            ("escape-dotdot", doc(files=["a.txt", "../victim.txt"])),
            ("escape-absolute", doc(files=["a.txt", "VICTIM"])),  # filled in below
            ("escape-inner", doc(files=["a.txt", "sub/../../victim.txt"])),
            ("truncated", doc()[:20]), ("non-utf8", b'{"format": "\xff"}'),
            ("nested", b"[" * 100_000 + b"]" * 100_000),
            ("fifo", "fifo"), ("directory", "directory"), ("link", "link")]
    return out


@pytest.mark.parametrize("name, data", _manifest_variants(),
                         ids=[n for n, _ in _manifest_variants()])
def test_a_malformed_manifest_is_refused_and_nothing_is_deleted(name, data, report,
                                                                tmp_path, capsys):
    victim = tmp_path / "victim.txt"  # beside the directory: a manifest names it
    victim.write_text("not mcsim's")
    d = tmp_path / "d"
    with outdir.output_directory(d) as staging:
        (staging / "a.txt").write_text("mcsim's")
    (d / "notes.txt").write_text("the user's")
    manifest = d / outdir.MANIFEST
    manifest.unlink()
    if data == "fifo":
        os.mkfifo(manifest)  # reading it would block for ever
    elif data == "directory":
        manifest.mkdir()
    elif data == "link":
        manifest.symlink_to(victim)
    else:
        manifest.write_bytes(data.replace(b"VICTIM", str(victim).encode()))
    before = sorted(p.name for p in d.iterdir())
    said = r"is a directory mcsim did not write" if data == "directory" else \
        r"\.mcsim-output\.json is not a manifest mcsim wrote \(.+; expected \{\"format\""
    with pytest.raises(ConfigError, match=said):
        outdir.check_output_dir(d)
    capsys.readouterr()
    assert main(["compare", str(report), str(report), "--out", str(d)]) == 2
    _one_line(capsys, "--out", outdir.MANIFEST)
    assert sorted(p.name for p in d.iterdir()) == before
    # force (--force) adds mcsim's files beside the others and still deletes nothing it
    # did not write: not the user's notes, and nothing a bad manifest names
    if data == "directory":  # mcsim could not write its own manifest: refused up front
        with pytest.raises(ConfigError, match="is a directory mcsim did not write"):
            outdir.check_output_dir(d, force=True)
        assert sorted(p.name for p in d.iterdir()) == before
    else:
        with outdir.output_directory(d, force=True) as staging:
            (staging / "compare.txt").write_text("new")
        assert (d / "compare.txt").read_text() == "new"
    assert (d / "notes.txt").read_text() == "the user's"
    assert (d / "a.txt").read_text() == "mcsim's" and victim.read_text() == "not mcsim's"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- compare --names (item 7) -------------------------------------------------------------

@pytest.mark.parametrize("names, needle", [
    ("", "label 1 is empty"), ("a,", "label 2 is empty"), (" ,b", "label 1 is empty"),
    ("a,a", "'a' is given twice"), ("a, a", "'a' is given twice")])
def test_compare_names_must_be_one_distinct_label_per_run(names, needle, report, capsys):
    assert main(["compare", str(report), str(report), "--names", names]) == 2
    _one_line(capsys, "--names", needle)
