"""The Python API as a researcher meets it: ``print(results)`` is the headline in a few
lines (not hundreds of lines of arrays), ``results.mean(group)`` is labelled while still
unpacking as ``mean, se``, and ``simulate`` keeps compiled kernels on disk, so a later
process (a notebook restarted) compiles nothing it compiled before, and a second call
with changed numbers compiles nothing at all."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO_ROOT, short_config

from mcsim.layout import HORIZON_TOTALS
from mcsim.results import Estimate


@pytest.fixture(scope="module")
def results():
    # the engine's run alone (simulate adds tables that compile kernels of their own)
    from mcsim import api

    return api.run(short_config("2024-12", paths=2048), progress=False)


def test_repr_is_the_headline_in_a_few_lines(results):
    text = repr(results)
    lines = text.splitlines()
    assert len(lines) <= 10, text
    assert "array(" not in text and "Accumulator" not in text
    assert lines[0].startswith("<Results: ") and "2,048 paths" in lines[0]
    assert "2024-01..2024-12" in lines[0]
    assert any(line.startswith("  cumulative Azure spend by 2024-12: median $") for line in lines)
    assert any(line.startswith("  Microsoft repaid: ") for line in lines)
    assert str(results) == text


def test_mean_is_labelled_and_still_unpacks(results):
    est = results.mean("horizon")
    mean, se = est  # as before
    assert isinstance(mean, np.ndarray) and isinstance(se, np.ndarray)
    assert est.labels == HORIZON_TOTALS and est.group == "horizon" and est.unit == "$"
    i = HORIZON_TOTALS.index("microsoft_net")
    assert est.at("microsoft_net") == (mean[i], se[i])
    frame = est.to_frame()
    assert frame.index.name == "statistic" and list(frame.columns) == ["mean", "mean_se"]
    assert frame.loc["cumulative_revenue", "mean"] == mean[0]
    assert "microsoft_net" in repr(est) and "array(" not in repr(est)
    months = results.mean("cumulative_azure_spend")
    assert months.labels[0] == "2024-01" and months.labels[-1] == "2024-12"
    assert len(repr(months).splitlines()) <= 9
    years = results.mean("gpu_price")
    assert years.labels == (2024,) and years.unit == "$ per H100-equivalent GPU-hour"
    with pytest.raises(ValueError, match="microsoft_nett"):
        est.at("microsoft_nett")
    back = pickle.loads(pickle.dumps(est))
    assert isinstance(back, Estimate) and back.labels == est.labels
    np.testing.assert_array_equal(back.mean, mean)


#: run in a fresh process: simulate twice (the second with changed numbers), counting
#: XLA compiles and the persistent cache's hits; prints them as JSON
PROBE = r"""
import json, sys
sys.path.insert(0, {tests!r})
from jax._src import monitoring
from helpers import short_config
import mcsim

counts = {{"compiles": 0, "hits": 0}}
monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: counts.__setitem__("compiles", counts["compiles"] + 1)
    if event == "/jax/core/compile/backend_compile_duration" else None)
monitoring.register_event_listener(
    lambda event, **kw: counts.__setitem__("hits", counts["hits"] + 1)
    if event == "/jax/compilation_cache/cache_hits" else None)
config = short_config("2024-12", paths=2048)
mcsim.simulate(config, overrides={{"deal.revenue_share": {first}}}, progress=False)
first = dict(counts)
mcsim.simulate(config, overrides={{"deal.revenue_share": 0.3}}, progress=False)
print(json.dumps({{"first": first, "second_compiles": counts["compiles"] - first["compiles"]}}))
"""


def test_simulate_caches_compiled_kernels_and_changed_numbers_do_not_recompile(tmp_path):
    cache = tmp_path / "xla"
    env = {**os.environ, "MCSIM_CACHE_DIR": str(cache), "JAX_PLATFORMS": "cpu",
           # every kernel cached, however quick its compile (JAX's default keeps only
           # those over 1 s, and a short test config compiles faster on a fast machine)
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}

    def probe(first: float) -> dict:
        code = PROBE.format(tests=str(REPO_ROOT / "tests"), first=first)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    cold = probe(0.1)
    assert cold["first"]["compiles"] > 0 and cold["first"]["hits"] == 0
    assert cold["second_compiles"] == 0  # changed numbers: the compiled kernels serve
    assert any(cache.iterdir())          # simulate kept them on disk
    warm = probe(0.2)                    # a new process (a notebook restarted)
    assert warm["first"]["hits"] >= cold["first"]["compiles"] // 2, (cold, warm)
    assert warm["second_compiles"] == 0
