"""``mcsim --help``, ``--version`` and a misused flag answer at once: the arguments are
parsed before JAX (2-3 s of imports on a 2-core machine), SciPy, matplotlib or pandas are
imported, and ``import mcsim`` imports none of them either (its public names are imported
on first use)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

HEAVY = ("jax", "jaxlib", "scipy", "matplotlib", "pandas")

#: each a command line that argparse answers (help, version) or refuses (misuse)
ARGUMENTS = [["--help"], ["--version"], ["run", "--help"], ["sweep", "--help"],
             ["run"],                                   # --out and the config missing
             ["run", "c.toml", "--out", "o", "--pathz", "5"],   # a misspelt flag
             ["run", "c.toml", "--out", "o", "--paths", "-3"],  # a bad value
             ["nosuchcommand"]]

PROBE = """
import sys
from mcsim.cli import main
try:
    main({argv!r})
except SystemExit as exc:
    code = exc.code
else:
    code = None
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))
print("HEAVY", heavy, file=sys.stderr)
"""


@pytest.mark.parametrize("argv", ARGUMENTS, ids=" ".join)
def test_arguments_are_answered_without_importing_jax(argv):
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                          capture_output=True, text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert last == "HEAVY []", done.stderr


def test_import_mcsim_is_light_and_the_public_names_still_work():
    code = ("import sys, mcsim; heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            f"set({HEAVY!r})); print(heavy); "
            "assert callable(mcsim.simulate) and callable(mcsim.load_config); "
            "import mcsim.sensitivity; assert callable(mcsim.sensitivity); "
            "from mcsim import api, Results, plot_compare; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "ok"]


def test_help_is_fast():
    """The whole process, interpreter included, well under a second (it took 3-4 s when
    JAX was imported first); the best of three, for a busy machine."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "mcsim.cli", "--help"],
                              capture_output=True, text=True, timeout=120)
        best = min(best, time.perf_counter() - t)
        assert done.returncode == 0 and "usage: mcsim" in done.stdout
    assert best < 0.8, f"mcsim --help took {best:.2f} s"
