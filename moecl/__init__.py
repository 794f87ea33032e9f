"""moecl: Mixture-of-Experts in continual learning (Li, Lin, Duan, Liang, Shroff, ICLR 2025).

The one entry point is ``moecl.simulate(moecl.Config(...), replicates=R, seed=S)``;
``moecl.simulate_many([config, ...])`` runs several configurations that differ only in
their scales through the same engine in one batch (same numbers as separate calls).
``moecl.book_seed(k)`` is the seed a chapter of the book uses for its k-th random
computation (set ``MOECL_BOOK_SEED`` to run the whole book as another experiment).
"""

from .book_seed import book_seed
from .config import BOOK_CONSTANTS, Config
from .records import SimulationResult
from .simulation import simulate, simulate_many
from .tasks import Pool, make_pool

__version__ = "0.1.0"

__all__ = ["BOOK_CONSTANTS", "Config", "Pool", "SimulationResult", "book_seed", "make_pool", "simulate", "simulate_many", "__version__"]
