"""report.html: one self-contained file, opened in a real headless browser (Chromium from
the system packages, installed here when missing): it loads with no script or console
errors and shows every plot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mcsim.report.html import plots_shown, render


def _chromium() -> str:
    """The system's Chromium; installed from the system packages when missing."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    if subprocess.run(apt, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=900)
        proc = subprocess.run(apt, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"could not install chromium: {proc.stderr[-2000:]}"
    found = shutil.which("chromium")
    assert found, "chromium installed but not on PATH"
    return found


@pytest.fixture(scope="module")
def browser() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def report(smc_run) -> Path:
    # the conditioned config (configs/observed.toml made small: conftest.py's smc_run,
    # written as ``mcsim run`` writes it): its page has every section and every plot, the
    # SMC posterior's included (few particles: the page, not the posterior, is tested here)
    return smc_run.report / "report.html"


def _load(browser: str, page: Path) -> tuple[dict, str]:
    """Open the page headless; return its <body> attributes after load, and the log."""
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                           "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, proc.stdout[:500]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    return attrs, proc.stderr


def _drawn(report) -> list[str]:
    """The report's plots (the cap and commitment CDFs only when its deal has them)."""
    names = [name for name, _ in plots_shown() if (report.parent / name).exists()]
    assert len(names) >= 9  # fan, annual, two CDFs, two conditioned ones, three SMC ones
    return names


def test_report_loads_in_a_browser_with_every_plot(browser, report):
    attrs, log = _load(browser, report)
    n = len(_drawn(report))
    assert attrs.get("data-images-loaded") == f"{n}/{n}"
    assert json.loads(attrs["data-errors"].replace("&quot;", '"')) == []
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    assert console == []  # the page logs nothing: anything here is an error


def test_report_is_self_contained(report):
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<link" not in text and "url(" not in text and "@import" not in text
    assert text.count("data:image/png;base64,") == len(_drawn(report))
    for needle in ("Headline", "Provenance", "config_sha256", "jax_version", "seed",
                   "Microsoft repaid", "[", "&plusmn;"):
        assert needle in text


def test_the_browser_check_sees_a_broken_plot(browser, report, tmp_path):
    """The load check can fail: a page with one corrupt PNG reports 3 of 4 plots."""
    summary = json.loads((report.parent / "summary.json").read_text())
    names = _drawn(report)
    images = {name: (report.parent / name).read_bytes() for name in names}
    images[names[0]] = b"\x89PNG\r\n\x1a\nnot really a png"
    page = tmp_path / "broken.html"
    page.write_text(render(summary, images), encoding="utf-8")
    attrs, _ = _load(browser, page)
    assert attrs.get("data-images-loaded") == f"{len(names) - 1}/{len(names)}"
