"""The notebooks run top to bottom (executed by a Jupyter kernel, at a small path count)
and are committed without outputs."""

from __future__ import annotations

import base64
import os

import nbformat
import pytest
from helpers import REPO_ROOT
from nbclient import NotebookClient

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == ["01_risk_bands.ipynb", "02_deal_regimes.ipynb",
                                           "03_what_drives_repayment.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path, monkeypatch, tmp_path):
    monkeypatch.setenv("MCSIM_NOTEBOOK_PATHS", "4096")
    monkeypatch.setenv("MCSIM_NOTEBOOK_BASE_ROWS", "256")
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
    nb = nbformat.read(path, as_version=4)
    # run from a folder that is not notebooks/: a notebook finds the configs from the
    # package, whatever the working directory
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the fan chart(s) and the survival curve(s) were drawn
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    assert errors == []
    png = base64.b64decode(images[0]["data"]["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    (tmp_path / f"{path.stem}_first_plot.png").write_bytes(png)
