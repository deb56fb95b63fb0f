"""Report directories follow the umask, as ``mkdir`` would make them: colleagues can open a
report written under umask 022 (they were drwx------ whatever the umask, from
``tempfile.mkdtemp``), and a private umask keeps it private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mcsim.report.outdir import current_umask, output_directory


@pytest.fixture
def umask():
    """Set the process's umask for a test, restored after it."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write(out: Path) -> None:
    """A report with a point folder inside (as a sweep writes one per point)."""
    with output_directory(out) as tmp:
        (tmp / "summary.json").write_text("{}\n")
        with output_directory(tmp / "point=1") as inner:
            (inner / "summary.json").write_text("{}\n")


@pytest.mark.parametrize("mask, expected", [(0o022, 0o755), (0o077, 0o700), (0o027, 0o750)])
def test_new_report_directories_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    out = tmp_path / "report"
    _write(out)
    assert _mode(out) == expected
    assert _mode(out / "point=1") == expected
    assert _mode(out / "summary.json") == expected & 0o666


def test_a_replaced_report_keeps_the_mode_its_owner_gave_it(tmp_path, umask):
    umask(0o022)
    out = tmp_path / "report"
    _write(out)
    os.chmod(out, 0o750)
    _write(out)  # an mcsim report: swapped for the new one
    assert _mode(out) == 0o750
