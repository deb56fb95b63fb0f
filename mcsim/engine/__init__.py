"""The engine: runs the model over chunks of path indices and reduces them on the fly.

One run, in stages (:mod:`mcsim.engine.run`): a **plan** cuts the paths into calls
(:mod:`~mcsim.engine.plan`: chunk sizes, process shares, stages, which configs share a
batch); the **kernel** (:mod:`~mcsim.engine.kernel`: one place, bound to a hashable
:class:`KernelSpec`) draws every path's parameters and monthly shocks from counter-based
generators and scans the months with :mod:`mcsim.model`; the **chunk reduction**
(:mod:`~mcsim.engine.chunk`) folds each call's paths into device-resident histograms,
month counts and one sum-tree node per device; the **host reducer**
(:mod:`~mcsim.engine.host`) brings those into the accumulators, checkpoints, and merges
the processes of a ``jax.distributed`` run; **conditioning**
(:mod:`~mcsim.engine.conditioning`) weights the paths by their likelihood of the
observations; the **diagnosis** (:mod:`~mcsim.engine.diagnosis`) names the parameter
behind paths with a NaN or inf. Nothing of size [paths, months] outlives a call, so
memory does not grow with the number of paths, and every number is fixed by the config and
its seed alone.

The engine returns accumulators and run facts (:class:`RunOutput`); :mod:`mcsim.api` makes
:class:`mcsim.results.Results` of them. The names below are the engine's public surface.
"""

from .kernel import (
    DTYPES,
    KernelInputs,
    KernelSpec,
    PathStatistics,
    build_kernel,
    flows_from_normals,
    kernel_inputs,
    shock_cholesky,
)
from .plan import (
    KernelOptions,
    RunPlan,
    batch_key,
    default_chunk_size,
    default_kernel_options,
    max_batch,
    plan_run,
)
from .run import RunInfo, RunOutput, run_batch


def run(config, **options) -> RunOutput:
    """One config's run (:func:`run_batch` of one); options as there."""
    return run_batch([config], **options)[0]


__all__ = ["DTYPES", "KernelInputs", "KernelOptions", "KernelSpec", "PathStatistics",
           "RunInfo", "RunOutput", "RunPlan", "batch_key", "build_kernel",
           "default_chunk_size", "default_kernel_options", "flows_from_normals",
           "kernel_inputs", "max_batch", "plan_run", "run", "run_batch", "shock_cholesky"]
