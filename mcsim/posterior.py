"""What an SMC posterior says, as tables: the parameters prior vs posterior, the posterior
predictive check of every observation, the tempering diagnostics, and the Monte Carlo
error of conditioned statistics from the spread of independent SMC runs.

Pure functions of :class:`mcsim.engine.smc.SMCPosterior` (host arrays) and of per-run
:class:`mcsim.results.Results`; no I/O. Percentiles are the nearest-rank sample ones of
the pooled particles of all runs; a posterior mean's error is the standard deviation of
the R runs' means over sqrt(R) (resampling correlates the particles of one run, so their
i.i.d. formula would be too small; independent runs are independent).
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .config import Config
from .device_draws import DeviceSampler
from .engine.smc import ACCEPTANCE_BANDS, SMCPosterior, uniforms_from_normals
from .x64 import enable_x64

PERCENTILES = (5, 50, 95)


def _row(x: np.ndarray) -> dict[str, float]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": math.nan, "sd": math.nan, "p5": math.nan, "p50": math.nan,
                "p95": math.nan}
    q = np.percentile(x, PERCENTILES, method="inverted_cdf")
    return {"mean": float(x.mean()), "sd": float(x.std()),
            **{f"p{p}": float(v) for p, v in zip(PERCENTILES, q, strict=True)}}


def _spread_se(per_run: list[float]) -> float:
    """sd of R independent runs' estimates / sqrt(R): the error of their pooled mean."""
    v = np.asarray(per_run, np.float64)
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1) / math.sqrt(v.size)) if v.size >= 2 else math.nan


def parameter_draws(config: Config, z: np.ndarray) -> dict[str, np.ndarray]:
    """Each drawn parameter's values (float64) at latent normals ``z`` [n, >= m]."""
    enable_x64()
    sampler = DeviceSampler(config)
    names = sampler.structure.uncertain
    if not names:
        return {}
    theta = _draw_call(sampler.structure)(jax.tree.map(jnp.asarray, sampler.arguments()),
                                          jnp.asarray(z[:, :len(names)]))
    return {n: np.asarray(theta[n]) for n in names}


@functools.lru_cache(maxsize=16)
def _draw_call(structure):
    """The parameters at given latent normals, compiled once per sampler structure."""
    sampler = DeviceSampler.from_structure(structure)
    return jax.jit(lambda args, zz: sampler.draw(
        args, jnp.arange(zz.shape[0], dtype=jnp.uint32), jnp.float64,
        uniforms=uniforms_from_normals(zz)))


def bias_draws(config: Config, posterior: SMCPosterior, z: np.ndarray) -> dict[str, np.ndarray]:
    """Each drawn bias factor's values, keyed ``bias:OBSERVATION``."""
    from .engine.conditioning import bias_factors, observation_windows
    lay = posterior.layout
    if not lay.bias_rows:
        return {}
    w = observation_windows(config)
    rows = np.array(lay.bias_rows)
    sub = {"bias_code": w["bias_code"][rows], "bias_fields": w["bias_fields"][rows]}
    f = np.asarray(bias_factors(sub, jnp.asarray(z[:, lay.bias_columns].T)))
    return {f"bias:{config.observations[k].name}": f[i] for i, k in enumerate(lay.bias_rows)}


def run_draws(config: Config, posterior: SMCPosterior, attr: str = "z") -> list[dict]:
    """Per SMC run, every drawn parameter's and bias factor's values at the run's final
    (``attr="z"``) or initial (``"prior_z"``) particles."""
    return [{**parameter_draws(config, getattr(r, attr)),
             **bias_draws(config, posterior, getattr(r, attr))} for r in posterior.runs]


def posterior_table(config: Config, posterior: SMCPosterior) -> list[dict]:
    """One row per drawn parameter (and drawn bias factor): prior and posterior mean, sd
    and 5/50/95%, the posterior mean's Monte Carlo error (spread of runs: each
    parameter's own, see :func:`parameter_effective_draws`), the shift of the mean in
    prior sds and the ratio of sds; sorted by |shift|, largest first."""
    prior_runs = run_draws(config, posterior, "prior_z")
    per_run = run_draws(config, posterior, "z")
    rows = []
    for name in prior_runs[0]:
        a = _row(np.concatenate([run[name] for run in prior_runs]))
        b = _row(np.concatenate([run[name] for run in per_run]))
        se = _spread_se([float(np.mean(run[name])) for run in per_run])
        shift = (b["mean"] - a["mean"]) / a["sd"] if a["sd"] > 0 else math.nan
        rows.append({"parameter": name,
                     **{f"prior_{k}": v for k, v in a.items()},
                     **{f"posterior_{k}": v for k, v in b.items()},
                     "posterior_mean_se": se, "shift_in_prior_sd": shift,
                     "sd_ratio": b["sd"] / a["sd"] if a["sd"] > 0 else math.nan})
    rows.sort(key=lambda r: -abs(r["shift_in_prior_sd"])
              if math.isfinite(r["shift_in_prior_sd"]) else 0.0)
    return rows


def parameter_effective_draws(config: Config, posterior: SMCPosterior) -> dict[str, float]:
    """Each drawn parameter's (and bias factor's) effective number of independent draws
    behind its posterior mean: the pooled particles over its own design effect
    (:func:`effective_paths_per_statistic`), so ``posterior sd / sqrt(draws)`` is the
    ``posterior_mean_se`` of :func:`posterior_table`."""
    per_run = run_draws(config, posterior, "z")
    names = list(per_run[0])
    if not names:
        return {}
    pooled = np.array([np.concatenate([run[k] for run in per_run]).var() for k in names])
    means = [np.array([run[k].mean() for k in names]) for run in per_run]
    total = sum(run[names[0]].size for run in per_run)
    draws = effective_paths_per_statistic(pooled, means, total)
    return {k: float(v) for k, v in zip(names, draws, strict=True)}


def error_scale(o) -> float:
    """The standard deviation of an observation's error (Student-t: sd sqrt(dof/(dof-2))
    where finite, else its sd as a scale)."""
    if math.isinf(o.dof) or o.dof <= 2:
        return o.sd
    return o.sd * math.sqrt(o.dof / (o.dof - 2))


def observation_table(config: Config, posterior: SMCPosterior) -> list[dict]:
    """The posterior predictive check of every observation: its value and error, the
    model's prior and posterior median and 90% interval (bias included), and the posterior
    z = (value - posterior mean) / sqrt(posterior variance + error variance)."""
    prior = np.concatenate([r.prior_predicted for r in posterior.runs], axis=1)
    post = np.concatenate([r.predicted for r in posterior.runs], axis=1)
    rows = []
    for k, o in enumerate(config.observations):
        a, b = _row(prior[k]), _row(post[k])
        scale = error_scale(o)
        z = (o.value - b["mean"]) / math.sqrt(b["sd"] ** 2 + scale ** 2)
        rows.append({"observation": o.name, "series": o.flow, "start": o.start,
                     "end": o.end, "value": o.value, "sd": o.sd, "error": o.error,
                     "dof": o.dof,
                     **{f"prior_{p}": a[p] for p in ("p5", "p50", "p95")},
                     **{f"posterior_{p}": b[p] for p in ("p5", "p50", "p95")},
                     "posterior_mean": b["mean"], "posterior_sd": b["sd"],
                     "posterior_z": z})
    return rows


def diagnostics(posterior: SMCPosterior) -> dict:
    """The tempering schedule, ESS, acceptance, step size, moves and mixing diagnostic
    (:func:`mcsim.engine.smc.mixing_correlation`) per step of every run, and the log
    evidence: functions of the config and seed alone (the runs' times are in
    :func:`timing`, with a run's provenance). ``distinct_particles`` (particles that
    differ at the end) is kept for older readers: it says little (a particle that moved
    once counts), the per-step ``mixing`` says how far the moves got."""
    s = posterior.settings
    return {
        "method": "smc", "move": s.move, "mixing_threshold": s.mixing_threshold,
        "acceptance_band": list(ACCEPTANCE_BANDS[s.move]),
        "particles": s.particles, "runs": s.runs, "ess_fraction": s.ess_fraction,
        "moves": s.moves, "seed": s.seed, "latent_dimension": posterior.layout.dimension,
        "last_observed_step": posterior.layout.num_steps,
        "runs_detail": [{
            "run": r.run, "steps": len(r.steps), "distinct_particles": r.distinct,
            "log_evidence": r.log_evidence,
            "likelihood_evaluations": r.evaluations,
            "moves_after_tempering": r.moves_after_tempering,
            "temperature": [st.temperature for st in r.steps],
            "ess": [st.ess for st in r.steps],
            "distinct_after_resampling": [st.distinct_after_resampling for st in r.steps],
            "acceptance": [st.acceptance for st in r.steps],
            "rho": [st.rho for st in r.steps],
            "moves": [st.moves for st in r.steps],
            "mixing": [st.mixing for st in r.steps]} for r in posterior.runs],
    }


def timing(posterior: SMCPosterior) -> list[float]:
    """Seconds of each SMC run (tempering and moves; the forecast is the run's own): its
    equal share of its group's time, since the runs of a group move together
    (:func:`mcsim.engine.smc.smc_group`), so that the runs' seconds add up to the SMC's."""
    return [r.seconds for r in posterior.runs]


def spread_error(per_run: list[np.ndarray]) -> np.ndarray:
    """Elementwise sd of the runs' estimates / sqrt(R) (NaN where fewer than 2 finite)."""
    v = np.stack([np.asarray(x, np.float64) for x in per_run])
    finite = np.isfinite(v)
    count = finite.sum(axis=0)
    mean = np.where(finite, v, 0.0).sum(axis=0) / np.maximum(count, 1)
    dev = np.where(finite, v - mean, 0.0)
    var = (dev * dev).sum(axis=0) / np.maximum(count - 1, 1)
    return np.where(count >= 2, np.sqrt(var / np.maximum(count, 1)), np.nan)


def design_effects(pooled_variance: np.ndarray, per_run_means: list[np.ndarray],
                   total_paths: int) -> np.ndarray:
    """Each statistic's own design effect [S]: the spread-of-runs variance of its pooled
    mean over its i.i.d. variance ``sigma^2 / total``, at least 1 (NaN where the runs or
    the variance cannot say: fewer than 2 finite runs, or no spread of the statistic).

    Statistics differ: the latent directions the facts pin mix in a move or two, those
    they barely see more slowly, so one design effect for all (the mean of these) under-
    or overstates each error by up to ~5x on configs/observed.toml. With R runs the
    estimate has R - 1 degrees of freedom (relative error ~ sqrt(2 / (R - 1)): 37% for
    the default 16 runs, 82% for 4)."""
    se = spread_error(per_run_means)
    iid = np.asarray(pooled_variance, np.float64) / total_paths
    with np.errstate(invalid="ignore", divide="ignore"):
        deff = np.where(np.isfinite(se) & np.isfinite(iid) & (iid > 0), se**2 / iid, np.nan)
    return np.where(np.isfinite(deff), np.maximum(deff, 1.0), np.nan)


def effective_paths_per_statistic(pooled_variance: np.ndarray,
                                  per_run_means: list[np.ndarray],
                                  total_paths: int) -> np.ndarray:
    """Each statistic's effective number of independent paths [S]: ``total / deff``
    (:func:`design_effects`), in [runs, total]; NaN where its design effect is."""
    deff = design_effects(pooled_variance, per_run_means, total_paths)
    return np.clip(total_paths / deff, len(per_run_means), total_paths)


def event_effective_paths(per_run_counts: list[np.ndarray]) -> float:
    """One event's effective number of independent paths behind its month distribution,
    from each run's counts of paths by the event's first month (last entry: not by the
    horizon): the pooled paths over the design effect of its cumulative probabilities
    P(by month t), the sum over months of their spread-of-runs variances over the sum of
    their i.i.d. ones ``p (1 - p) / total`` (the months where it is most uncertain weigh
    most), at least 1; in [runs, total]. NaN where the runs cannot say (fewer than 2, or
    the event certain or impossible in every month)."""
    counts = [np.asarray(c, np.float64) for c in per_run_counts]
    total = float(sum(c.sum() for c in counts))
    if len(counts) < 2 or total <= 0 or any(c.sum() <= 0 for c in counts):
        return math.nan
    cdf = [np.cumsum(c)[:-1] / c.sum() for c in counts]
    pooled = np.cumsum(sum(counts))[:-1] / total
    se = spread_error(cdf)
    iid = pooled * (1.0 - pooled) / total
    ok = np.isfinite(se) & (iid > 0)
    if not ok.any():
        return math.nan
    deff = max(float((se[ok] ** 2).sum() / iid[ok].sum()), 1.0)
    return float(np.clip(total / deff, len(counts), total))


def effective_paths(pooled_variance: np.ndarray, per_run_means: list[np.ndarray],
                    total_paths: int) -> float:
    """The number of independent paths the pooled particles are worth: ``total / deff``,
    the design effect ``deff`` the average over statistics of (spread-of-runs variance of
    the pooled mean) / (i.i.d. variance ``sigma^2 / total``). Averaging the ratios (not
    their inverses) keeps each unbiased; capped to [runs, total]."""
    se = spread_error(per_run_means)
    iid = pooled_variance / total_paths
    ok = np.isfinite(se) & np.isfinite(iid) & (iid > 0)
    if not ok.any():
        return float(total_paths)
    deff = float(np.mean(se[ok] ** 2 / iid[ok]))
    return float(np.clip(total_paths / max(deff, 1e-12), len(per_run_means), total_paths))


#: Whether :func:`inference_data` has said (once per process) that ArviZ's ESS and MCSE
#: do not apply to SMC particles.
_ESS_WARNED = False

#: What ArviZ's ESS/MCSE would get wrong, in the docstring, the warning and the attrs.
ARVIZ_ERROR_NOTE = (
    "ArviZ's ess/mcse (and r_hat) treat each SMC run's particles as a Markov chain's "
    "draws; they are not: the particles of one run are exchangeable but correlated by "
    "resampling, in no order. Use mcsim's own errors (the spread of the independent runs): "
    "the attribute mcsim_mean_se of each posterior and posterior_predictive variable, and "
    "the posterior's mcsim_effective_paths.")


def _padded_steps(posterior: SMCPosterior, field: str) -> np.ndarray:
    """[runs, most steps] of one SMCStep field, NaN after a run's last step (runs may take
    different numbers of tempering steps)."""
    steps = max(len(r.steps) for r in posterior.runs)
    out = np.full((len(posterior.runs), steps), np.nan)
    for i, r in enumerate(posterior.runs):
        out[i, :len(r.steps)] = [float(getattr(st, field)) for st in r.steps]
    return out


def inference_data(config: Config, posterior: SMCPosterior,
                   effective_paths: float | None = None):
    """The SMC posterior as ``arviz.InferenceData`` (needs the optional extra
    ``mcsim[arviz]``): chains are the independent SMC runs, draws their particles.

    Groups: ``posterior`` and ``prior`` (every drawn parameter and bias factor, at the
    final and the initial particles); ``observed_data`` (``observations[observation]``,
    the observed values); ``posterior_predictive`` and ``prior_predictive``
    (``observations[chain, draw, observation]``: each particle's model value of each
    observation, bias factor included, *without* the observation error: the SMC keeps
    these, not replicated data); ``log_likelihood`` (``observations[chain, draw,
    observation]``: each observation's log-likelihood at the final particles, without its
    constant, so they sum to the run's own total); ``sample_stats`` (per tempering step,
    dims ``(chain, step)``, NaN after a run's last step: ``temperature``, ``ess`` of the
    incremental weights, ``acceptance``, ``rho``, ``distinct_after_resampling``,
    ``log_evidence_increment``, ``moves`` and ``mixing``, the step's mixing diagnostic
    (:func:`mcsim.engine.smc.mixing_correlation`); per run: ``log_evidence``, ``steps``;
    per particle: ``lp``, the total log-likelihood).

    ArviZ's ESS and MCSE do not apply to SMC particles (warned once per process):
    mcsim's own errors, from the spread of the runs, are each variable's
    ``mcsim_mean_se`` attribute (the error of its pooled mean), and the posterior's
    ``mcsim_effective_paths`` attribute (when given: the forecast's effective number of
    independent paths, :func:`effective_paths`).
    """
    global _ESS_WARNED
    try:
        import arviz as az
        import xarray as xr
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("posterior draws as InferenceData need ArviZ: "
                          "pip install 'mcsim[arviz]'") from e
    from .engine.conditioning import observation_log_likelihoods, observation_windows

    if not _ESS_WARNED:
        _ESS_WARNED = True
        warnings.warn(ARVIZ_ERROR_NOTE, UserWarning, stacklevel=3)

    def stacked(attr: str) -> dict[str, np.ndarray]:
        runs = run_draws(config, posterior, attr)
        return {k: np.stack([run[k] for run in runs]) for k in runs[0]}

    runs = posterior.runs
    names = [o.name for o in config.observations]
    windows = observation_windows(config)
    # [runs, particles, observations]: ArviZ's (chain, draw, ...) order
    post_pred = np.stack([np.asarray(r.predicted, np.float64).T for r in runs])
    prior_pred = np.stack([np.asarray(r.prior_predicted, np.float64).T for r in runs])
    loglik = np.stack([np.asarray(observation_log_likelihoods(
        jnp.asarray(r.predicted, jnp.float64), windows)).T for r in runs])
    dims = {"observations": ["observation"]}
    idata = az.from_dict(
        posterior=stacked("z"), prior=stacked("prior_z"),
        observed_data={"observations": np.array([o.value for o in config.observations],
                                                np.float64)},
        posterior_predictive={"observations": post_pred},
        prior_predictive={"observations": prior_pred},
        log_likelihood={"observations": loglik},
        coords={"observation": names}, dims=dims)

    # per step, not per particle: its own dimension (ArviZ's helpers read the
    # (chain, draw) variables of sample_stats and pass over the rest)
    chains = np.arange(len(runs))
    steps = _padded_steps(posterior, "temperature").shape[1]
    per_step = {f: (("chain", "step"), _padded_steps(posterior, f))
                for f in ("temperature", "ess", "acceptance", "rho",
                          "distinct_after_resampling", "log_evidence_increment", "moves",
                          "mixing")}
    per_run = {"log_evidence": (("chain",), np.array([r.log_evidence for r in runs])),
               "steps": (("chain",), np.array([len(r.steps) for r in runs]))}
    lp = {"lp": (("chain", "draw"), np.stack([np.asarray(r.loglik, np.float64)
                                             for r in runs]))}
    idata.add_groups(sample_stats=xr.Dataset(
        {**per_step, **per_run, **lp},
        coords={"chain": chains, "step": np.arange(1, steps + 1),
                "draw": np.arange(runs[0].loglik.shape[0])}))

    # mcsim's errors beside ArviZ's: the spread of the independent runs
    se = {row["parameter"]: row["posterior_mean_se"]
          for row in posterior_table(config, posterior)}
    for name in idata.posterior.data_vars:
        idata.posterior[name].attrs["mcsim_mean_se"] = float(se[name])
    idata.posterior_predictive["observations"].attrs["mcsim_mean_se"] = spread_error(
        [p.mean(axis=0) for p in post_pred])
    idata.posterior_predictive.attrs["mcsim_note"] = (
        "model values (bias included) without the observation error")
    for group in (idata.posterior, idata.posterior_predictive):
        group.attrs["mcsim_error_note"] = ARVIZ_ERROR_NOTE
    if effective_paths is not None:
        idata.posterior.attrs["mcsim_effective_paths"] = float(effective_paths)
    return idata
