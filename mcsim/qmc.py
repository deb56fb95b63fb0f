"""Scrambled Sobol points for the per-path parameters (``variance_reduction = "sobol"``).

Path i's independent parameter uniforms are point i of one scrambled Sobol sequence of
dimension m (the uncertain parameters), scrambled (linear matrix scramble plus digital
shift, SciPy's implementation) by a generator seeded from the config's seed. A point is a
pure function of (seed, i), so runs stay identical whatever the chunking; the monthly shocks
remain the counter-based pseudo-random streams. Points come from the host: SciPy's
generator is well tested, and at the sizes a host can feed, drawing them costs less than
the simulation they drive.
"""

from __future__ import annotations

import numpy as np

#: 32-bit points: up to 2^32 paths (the engine's limit), distinct in every coordinate.
SOBOL_BITS = 32
_STREAM_SOBOL = 0x736F626C  # "sobl": the scramble's own seed stream
_LOW, _HIGH = 2.0**-53, 1.0 - 2.0**-53


def sobol_points_for(config) -> SobolPoints | None:
    """The run's source of parameter uniforms: its Sobol points when
    ``simulation.variance_reduction = "sobol"`` and something is uncertain, else None
    (the counter-based uniforms)."""
    dim = len(config.uncertain_parameters())
    if config.simulation.variance_reduction != "sobol" or not dim:
        return None
    return SobolPoints(config.simulation.seed, dim)


class SobolPoints:
    """Points ``start .. start + n`` of the seed's scrambled Sobol sequence, [n, dim].

    Reading forward is cheap; a jump (a resumed run, another process's share) replays the
    sequence from the start, O(start).
    """

    def __init__(self, seed: int, dim: int) -> None:
        self.seed, self.dim = seed, dim
        self._engine = self._fresh()

    def _fresh(self):
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.seed >> 32, _STREAM_SOBOL])
        from scipy.stats import qmc  # here: scipy.stats costs 0.3 s of every start

        return qmc.Sobol(d=self.dim, scramble=True, bits=SOBOL_BITS, rng=rng)

    def points(self, start: int, n: int) -> np.ndarray:
        """Uniforms in the open interval (0, 1), float64 [n, dim]."""
        done = self._engine.num_generated
        if start < done:
            self._engine = self._fresh()
            done = 0
        if start > done:
            self._engine.fast_forward(start - done)
        # clipped away from 0 and 1 (a scrambled point can be 0 in a coordinate at 2^-32
        # resolution), as the inverse CDFs need
        return np.clip(self._engine.random(n), _LOW, _HIGH)
