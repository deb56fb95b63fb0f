"""The path runner (mcsim.engine.runner): every kind of run outside the main one shards over
every local device and gives the same bits whatever the devices or the chunking."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import CONFIGS_DIR

import mcsim
from mcsim.engine.kernel import KernelSpec, kernel_inputs
from mcsim.engine.runner import PathRows, TreeSums, run_paths

#: paired differences, sensitivity's design rows and the facts on one process, printed as
#: JSON: run once with one CPU device and once with two
KINDS_OF_RUN = f"""
import json, jax, numpy as np
import mcsim
from mcsim.paired import paired_difference
from mcsim.sensitivity import evaluate_rows
from mcsim.facts import FACTS, facts_in, fact_values
a = mcsim.load_config({str(CONFIGS_DIR / 'base.toml')!r})
b = mcsim.with_overrides(a, {{'deal.revenue_share': 0.1}})
r = paired_difference(a, b, paths=3000, chunk=1024, progress=False)
rng = np.random.default_rng(5)
u = rng.uniform(0.01, 0.99, (3000, len(list(a.uncertain_parameters()))))
rows = evaluate_rows(a, u, np.arange(3000, dtype=np.uint32) * 7)
facts = fact_values(a, facts_in(a, FACTS), num_paths=3000)
print(json.dumps({{"devices": len(jax.local_devices()),
                  "paired": [r.difference.tolist(), r.se_paired.tolist(), r.mean_a.tolist()],
                  "rows": [rows["repayment_month"].tolist(),
                           rows["cumulative_azure_spend"].tolist()],
                  "facts": facts.tolist()}}))
"""


@pytest.mark.slow
def test_every_kind_of_run_uses_every_device_with_the_same_numbers():
    out = []
    for n in (1, 2):
        env = {**os.environ, "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
        done = subprocess.run([sys.executable, "-c", KINDS_OF_RUN], capture_output=True,
                              text=True, env=env, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert [o["devices"] for o in out] == [1, 2]
    for kind in ("paired", "rows", "facts"):
        assert out[0][kind] == out[1][kind], kind
    assert len(out[0]["facts"]) > 0 and len(out[0]["facts"][0]) == 3000


class _Spend:
    """Cumulative Azure spend at the horizon and its square root: two rows per path."""

    def __init__(self, last: int):
        self.last = last

    def __hash__(self):
        return hash(("spend", self.last))

    def __eq__(self, other):
        return isinstance(other, _Spend) and other.last == self.last

    def __call__(self, outs):
        import jax.numpy as jnp

        x = outs[0].stats[self.last]
        return jnp.stack([x, jnp.sqrt(x)])


def test_tree_sums_equal_the_runs_own_means_for_any_chunk():
    config = mcsim.load_config(CONFIGS_DIR / "base.toml")
    spec, inputs = KernelSpec.for_config(config), kernel_inputs(config)
    T = config.grid.num_months
    totals = [run_paths([spec], [inputs], TreeSums(_Spend(T - 1), 2), 2500, chunk_size=c,
                        progress=False)["tree"].total() for c in (1024, 4096)]
    assert totals[0][0] == totals[1][0] == 2500
    np.testing.assert_array_equal(totals[0][1], totals[1][1])
    np.testing.assert_array_equal(totals[0][2], totals[1][2])
    # the same paths' mean as the report's run (its own sum tree over the same indices)
    res = mcsim.simulate(config, paths=2500, progress=False)
    assert totals[0][1][0] / 2500 == res.mean("cumulative_azure_spend").mean[T - 1]


def test_path_rows_are_the_first_paths_in_order():
    config = mcsim.load_config(CONFIGS_DIR / "base.toml")
    spec, inputs = KernelSpec.for_config(config), kernel_inputs(config)
    T = config.grid.num_months

    def spend(outs):
        return {"spend": outs[0].stats[T - 1]}

    whole = run_paths([spec], [inputs], PathRows(spend, 1500), 1500, chunk_size=1024,
                      progress=False)
    part = run_paths([spec], [inputs], PathRows(spend, 700), 700, chunk_size=4096,
                     progress=False)
    assert whole["spend"].shape == (1500,) and whole["finite"].all()
    np.testing.assert_array_equal(part["spend"], whole["spend"][:700])
