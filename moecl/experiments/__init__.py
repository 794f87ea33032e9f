"""Named experiments of the book, ready to run and save (``python -m moecl run NAME``).

Each experiment is a function ``(scale, seed, replicates=None, progress=False,
rounds=None, overrides=None) -> (header, arrays)`` built on `moecl.simulate`;
`EXPERIMENTS` maps names to them and `run_experiment` calls one by name. ``header`` is
the JSON header of a results file (`moecl.results`) and ``arrays`` its arrays, so::

    header, arrays = moecl.experiments.run_experiment("termination", scale="ci", seed=0)
    moecl.results.save_results("termination.npz", header, arrays)

is what ``python -m moecl run termination`` does.

One job per module: `registry` (the registry, the size presets `SCALES` and
`run_experiment`), `recorder` (`Recorder`, which simulates the settings of one
experiment and summarises them into arrays), `paper` (the five experiments of the
paper's synthetic study), `regimes` (the regime map), `drift` (drift and re-opening)
and `deep_methods` (CNN experts: the gate against SEED and the baselines).

Scales (`SCALES`): ``"ci"`` runs in seconds (R = 40 replicates, T = 300 rounds),
``"paper"`` is the full size (R = 500, T = 2000). ``replicates`` and ``rounds``
override the preset (``rounds`` exists for quick tests). The ``regime-map``
experiment, a grid of 180 settings at paper scale, has its own presets and grids
(`REGIME_GRIDS`: R = 40, T = 300 and R = 200, T = 1000), and `regime_regions`
classifies its cells.

Every setting of one experiment is simulated with the same seed, hence the same
pool of ground truths and the same per-replicate random streams (common random
numbers), so differences between settings are not noise between pools.

Array names are ``<label>/<quantity>[/<statistic>]`` where ``label`` names a setting
(``M8``: M = 8 with early termination, ``M8-noterm``: without) and per-round
quantities are summarised over replicates by `moecl.results.summarise` (``mean``,
``se``, ``p2.5``, ``p50``, ``p97.5``). The header's ``arrays`` field describes
every array, ``labels`` lists the settings in order and ``configs`` gives each
setting's full `Config`.
"""

# Importing the modules registers their experiments, in the order `moecl list` shows them.
from . import paper, regimes, drift, deep_methods  # noqa: F401, I001
from . import predictions  # noqa: F401, E402
from . import deep_paper  # noqa: F401, E402
from .deep_methods import DEEP_METHODS, DEEP_SCALES, DEEP_STREAMS
from .drift import DRIFT_RULES, DRIFT_SCALES, DRIFT_SETTING, DRIFT_WINDOWS, drift_round, task_purity, windowed_mean
from .recorder import BATCH_BYTES, PURITY_WINDOWS, Recorder
from .regimes import (
    REGIME_GRIDS,
    REGIME_TERMINATION,
    REGION_Z,
    REGIONS,
    SPECIALISATION_THRESHOLD,
    RegimeGrid,
    gate_snr,
    regime_expert_counts,
    regime_regions,
    regime_settings,
)
from .registry import EXPERIMENTS, SCALES, Experiment, Scale, experiment, resolve_scale, run_experiment

__all__ = [
    "BATCH_BYTES", "DEEP_METHODS", "DEEP_SCALES", "DEEP_STREAMS", "DRIFT_RULES", "DRIFT_SCALES", "DRIFT_SETTING",
    "DRIFT_WINDOWS", "EXPERIMENTS", "Experiment", "PURITY_WINDOWS", "REGIME_GRIDS", "REGIME_TERMINATION", "REGIONS",
    "REGION_Z", "Recorder", "RegimeGrid", "SCALES", "SPECIALISATION_THRESHOLD", "Scale", "drift_round", "experiment",
    "gate_snr", "regime_expert_counts", "regime_regions", "regime_settings", "resolve_scale", "run_experiment",
    "task_purity", "windowed_mean",
]
