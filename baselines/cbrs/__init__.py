"""``cbrs``: class-balanced re-sampling.

Fine-tuning as ``sd-finetune``, but the training sampler draws example i with probability
p_i proportional to 1 / n_class(i), where a class is a prompt (subgroup x finding) and
n_class(i) the number of training examples of i's class: every class is drawn equally often
(with replacement). The re-sampling baseline of FairGen's comparisons. The weights are
:func:`benchmark.diffusion.class_balanced_weights`.
"""

from __future__ import annotations

import numpy as np

from benchmark.diffusion import DiffusionGenerator, TrainData, class_balanced_weights

__all__ = ["CBRS", "class_balanced_weights"]


class CBRS(DiffusionGenerator):
    name = "cbrs"
    description = "fine-tuning with class-balanced re-sampling (p_i ~ 1/n_class)"

    def sampler_weights(self, data: TrainData) -> np.ndarray:
        return class_balanced_weights(data.class_ids.numpy(), 1.0)
