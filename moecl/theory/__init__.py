"""Closed forms for the expected forgetting and generalization error, and the models behind them.

Proposition 4 (one expert, M = 1) and Theorems 1 (M > N) and 2 (M < N) of Li, Lin,
Duan, Liang and Shroff (ICLR 2025) give the expected forgetting E[F_t] and
generalization error E[G_t] of the linear MoE in continual learning. This package
states them as sympy expressions derived from the second-moment recursion of the
phase model, evaluates them numerically, and checks them against Monte Carlo.

One job per module:

* `symbolic`: the sympy symbols and helpers of every derivation.
* `single_expert`: Proposition 4 (book chapter: single expert).
* `definition1`: the exact single-expert expectations under the paper's Definition 1
  features, many pools at once (book chapter: single expert).
* `balanced`: Theorems 1-2 for balanced expert sets (book chapter: MoE theory).
* `sharing`: the same with sharing within an expert set (book chapter: sharing).
* `phase_model`: the two-phase routing model, its exact second-moment recursion and
  its Monte Carlo simulation.
* `similarity`: anisotropic features: projector moments and the weighted recursion
  (book chapter: similarity).
* `checks`: Monte Carlo z-checks of a form against simulations.

Which feature model they are exact for
--------------------------------------
Every form here is an exact expectation for **isotropic Gaussian features** (all s
columns of X_t i.i.d. N(0, I), `Config(features="isotropic")`) under the phase
model's routing (uniform for t <= T1, Q2 afterwards, independent of the models);
for M = 1 the routing is trivial and the forms are exact for Algorithm 1 itself.
Under the paper's **Definition 1** features the span of X_t always contains
v_{n_t}, so P_t is not a uniformly random projector and the forms are only an
approximation; for M > 1, Algorithm 1's routing also depends on the models.
"""

from .balanced import compact_forms, curves, derive_balanced_forms, moe_expectations, moe_limits, moe_rates, pool_quantities
from .checks import METRICS, Z_MAX, format_z_scores, z_scores
from .phase_model import default_routing, phase_model_expectations, simulate_phase_model
from .sharing import compact_sharing_forms, derive_sharing_forms, sharing_curves, sharing_expectations
from .single_expert import single_expert_forgetting, single_expert_generalization, single_expert_limits
from .symbolic import SYMBOLS

__all__ = [
    "METRICS",
    "SYMBOLS",
    "Z_MAX",
    "compact_forms",
    "compact_sharing_forms",
    "curves",
    "default_routing",
    "derive_balanced_forms",
    "derive_sharing_forms",
    "moe_expectations",
    "moe_limits",
    "moe_rates",
    "phase_model_expectations",
    "pool_quantities",
    "sharing_curves",
    "sharing_expectations",
    "simulate_phase_model",
    "single_expert_forgetting",
    "single_expert_generalization",
    "single_expert_limits",
    "z_scores",
    "format_z_scores",
]
