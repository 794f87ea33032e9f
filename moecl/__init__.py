"""moecl: Mixture-of-Experts in continual learning (Li, Lin, Duan, Liang, Shroff, ICLR 2025).

The one entry point is ``moecl.simulate(moecl.Config(...), replicates=R, seed=S)``.
"""

from .algorithm import SimulationResult, simulate
from .config import BOOK_CONSTANTS, Config
from .tasks import Pool, make_pool

__version__ = "0.1.0"

__all__ = ["BOOK_CONSTANTS", "Config", "Pool", "SimulationResult", "make_pool", "simulate", "__version__"]
