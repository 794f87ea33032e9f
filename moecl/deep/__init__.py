"""Deep MoE in continual learning: CNN experts routed by the paper's gate (book chapters: deep experts, SEED).

The paper carries its linear analysis to deep networks; this package runs the same
Algorithm 1 with neural experts. One job per module:

* `config`: `DeepConfig`, the parameters of a run, and `resolve_device`.
* `networks`: the experts (a small CNN, ResNet-18).
* `engine`: `run` / `run_replicates`, the loop over rounds (several seeds in lockstep),
  and the gate's input `gate_map`.
* `training`: training and evaluation of the selected experts, one network or stacked
  over replicates.
* `methods`: how the expert of a round is chosen: the paper's gate, SEED, fine-tuning,
  joint training.
* `checkpoint`: atomic checkpoints and exact resumption.
* `records`: `RoundRecords` and the metrics that follow from them (`accuracy_matrix`,
  `summarise`).
* `datasets`: the data directory and the loaders of MNIST, CIFAR-10/100 and Tiny
  ImageNet (official file formats).
* `streams`: continual-learning task streams cut from those data sets.

Importing this package imports torch; the linear half of `moecl` does not.
"""

from .config import (
    ARCHITECTURES,
    DEVICES,
    GATE_CENTRINGS,
    GATE_INPUTS,
    LOCALITY_SIGNALS,
    TASK_ORDERS,
    DeepConfig,
    resolve_device,
)
from .engine import run, run_replicates
from .gate_inputs import gate_feature, gate_map
from .networks import ResNet18, SmallCNN, make_expert, model_outputs, parameter_vector
from .records import RULES, RoundRecords, accuracy_matrix, max_forgetting, prediction_tables, summarise
from .streams import SCENARIOS

__all__ = [
    "ARCHITECTURES", "DEVICES", "GATE_CENTRINGS", "GATE_INPUTS", "LOCALITY_SIGNALS", "SCENARIOS", "TASK_ORDERS", "DeepConfig", "ResNet18", "RoundRecords", "SmallCNN",
    "RULES", "accuracy_matrix", "gate_feature", "gate_map", "make_expert", "max_forgetting", "model_outputs", "parameter_vector", "prediction_tables",
    "resolve_device", "run", "run_replicates", "summarise",
]
