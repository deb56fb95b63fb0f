"""Scale: the same numbers on one device, several devices and two processes; one compile
per shape; device memory bounded by one chunk; device draws equal to the host's."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CONFIGS_DIR
from helpers import short_config_file as write_short_config

from mcsim import load_config
from mcsim.accumulators import MoneyBins
from mcsim.api import run
from mcsim.device_draws import draw_on_device
from mcsim.distributions import Distribution
from mcsim.draws import ParameterSampler, to_dtype
from mcsim.engine import KernelOptions, KernelSpec, kernel_inputs
from mcsim.engine.chunk import chunk_kernel, no_uniforms, zero_counts
from mcsim.engine.conditioning import no_windows
from mcsim.engine.plan import bytes_per_path
from mcsim.layout import StatLayout

MCSIM = str(Path(sys.executable).parent / "mcsim")


@pytest.fixture(scope="module")
def short_config_file(tmp_path_factory) -> Path:
    """The amendment's config cut to three years (quick to compile)."""
    return write_short_config(tmp_path_factory.mktemp("cfg"), "2026-12", paths=5000, seed=3)


def _run_cli(config: Path, out: Path, *extra, devices: int = 1, **popen):
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.Popen([MCSIM, "run", str(config), "--out", str(out), "--no-plots",
                             "--no-progress", *map(str, extra)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _summary(out: Path) -> tuple[str, dict]:
    s = json.loads((out / "summary.json").read_text())
    prov = s.pop("provenance")
    return json.dumps(s, sort_keys=True), prov


def _finish(proc) -> None:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr


@pytest.fixture(scope="module")
def one_device(short_config_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "report"
    _finish(_run_cli(short_config_file, out, "--chunk-size", 1024))
    return _summary(out)


@pytest.mark.parametrize("devices, chunk", [(3, 1024), (4, 2048)])
def test_sharded_over_devices_is_bit_identical(short_config_file, one_device, tmp_path,
                                               devices, chunk):
    _finish(_run_cli(short_config_file, tmp_path / "r", "--chunk-size", chunk,
                     devices=devices))
    text, prov = _summary(tmp_path / "r")
    assert prov["num_devices"] == devices
    assert text == one_device[0]  # every statistic, byte for byte


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(short_config_file, one_device, tmp_path):
    """jax.distributed on 127.0.0.1: each process runs its share of the paths, the
    accumulators are merged, and process 0's report equals the one-process report."""
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [_run_cli(short_config_file, tmp_path / "r", "--chunk-size", 1024,
                      "--coordinator", coordinator, "--num-processes", 2, "--process-id", i)
             for i in range(2)]
    for proc in procs:
        _finish(proc)
    text, prov = _summary(tmp_path / "r")
    assert prov["num_processes"] == 2 and prov["num_devices"] == 2
    assert text == one_device[0]


def test_a_second_run_of_the_same_shape_never_recompiles(short_config_file):
    """New seed, new deal terms, new distribution fields: the same compiled kernel."""
    cfg = load_config(short_config_file).with_simulation(paths=2048)
    run(cfg, chunk_size=1024, progress=False)
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        params = dict(cfg.parameters)
        params["gpu_price_0"] = Distribution("lognormal", {"median": 2.5, "sigma": 0.3})
        other = dataclasses.replace(cfg, deal=dataclasses.replace(cfg.deal, revenue_share=0.1),
                                    parameters=params).with_simulation(paths=3000, seed=4)
        before = len(compiles)
        run(other, chunk_size=1024, progress=False)
        assert len(compiles) == before
        # a shape no other test uses (coarser bins): the listener does hear its compile
        run(other, chunk_size=1024, bins=MoneyBins(bins_per_decade=7), progress=False)
        assert len(compiles) > before
    finally:
        jax.monitoring.clear_event_listeners()


def test_device_memory_is_one_chunk(short_config_file):
    """XLA's own memory analysis of the kernel stays under bytes_per_path * chunk (the
    estimate that sizes accelerator chunks), and after a run no per-path array is alive."""
    cfg = load_config(short_config_file)
    grid, bins, devices = cfg.grid, MoneyBins(), tuple(jax.local_devices())
    for chunk in (1024, 8192):
        kernel = chunk_kernel(KernelSpec.for_config(cfg), bins, chunk, devices)
        compiled = kernel.lower(kernel_inputs(cfg), zero_counts(StatLayout.of(cfg), bins, devices),
                                jnp.uint32(0), jnp.int64(chunk), no_uniforms(devices),
                                no_windows(), no_uniforms(devices)).compile()
        mem = compiled.memory_analysis()
        assert mem.temp_size_in_bytes <= bytes_per_path(grid) * chunk
    run(cfg.with_simulation(paths=20000), chunk_size=4096, progress=False)
    live = sum(a.nbytes for a in jax.live_arrays() if a.ndim and a.shape[-1] >= 4096)
    assert live == 0


@pytest.mark.parametrize("name", ["base.toml", "amendment_2026.toml"])
def test_device_draws_equal_host_draws(name):
    """The device's float64 recipe matches the host's to rounding (1e-12 of each
    parameter's scale); rounded to float32 the two agree to one unit in the last place."""
    cfg = load_config(CONFIGS_DIR / name)
    host = ParameterSampler(cfg).draw(123_456, 8192)
    dev = draw_on_device(cfg, 123_456, 8192)
    assert set(host) == set(dev)
    for k in host:
        scale = np.std(host[k]) + np.abs(np.mean(host[k])) + 1e-300
        assert np.max(np.abs(dev[k] - host[k])) <= 1e-12 * scale, k
    dev32 = draw_on_device(cfg, 123_456, 8192, jnp.float32)
    host32 = to_dtype(host, np.float32)
    for k in host:
        a, b = dev32[k], host32[k]
        if k.startswith("_f64_"):  # version 3's parameters are also kept in float64
            assert a.dtype == b.dtype == np.float64
            np.testing.assert_array_equal(a, dev[k])
            continue
        assert a.dtype == np.float32
        assert np.all(np.abs(a - b) <= np.spacing(np.maximum(np.abs(a), np.abs(b)))), k


def test_kernel_layouts_keep_chunk_invariance(short_config_file):
    """Histogram copies never change a count; an unrolled loop keeps every result
    bit-identical across chunk sizes (it may move float32 last bits, like another device,
    so it is compared with itself)."""
    cfg = load_config(short_config_file).with_simulation(paths=3000)
    plain = run(cfg, chunk_size=1024, progress=False, options=KernelOptions()).accumulator
    copies = run(cfg, chunk_size=2048, progress=False,
                 options=KernelOptions(hist_copies=5)).accumulator
    np.testing.assert_array_equal(copies.histogram, plain.histogram)
    np.testing.assert_array_equal(copies.moments.mean, plain.moments.mean)
    unrolled = [run(cfg, chunk_size=c, progress=False,
                    options=KernelOptions(unroll=3, hist_copies=2)).accumulator
                for c in (1024, 4096)]
    np.testing.assert_array_equal(unrolled[0].histogram, unrolled[1].histogram)
    np.testing.assert_array_equal(unrolled[0].moments.mean, unrolled[1].moments.mean)
    np.testing.assert_array_equal(unrolled[0].moments.m2, unrolled[1].moments.m2)
    np.testing.assert_allclose(unrolled[0].moments.mean, plain.moments.mean, rtol=1e-5)
