"""``sqrs``: square-root re-sampling.

Fine-tuning as ``sd-finetune``, but the training sampler draws example i with probability
p_i proportional to 1 / sqrt(n_class(i)) (a class = a prompt = subgroup x finding), so class c
is drawn with probability proportional to sqrt(n_c): between the natural frequencies and
full class balance (CBRS). The weights are :func:`benchmark.diffusion.class_balanced_weights`.
"""

from __future__ import annotations

import numpy as np

from benchmark.diffusion import DiffusionGenerator, TrainData, class_balanced_weights


class SQRS(DiffusionGenerator):
    name = "sqrs"
    description = "fine-tuning with square-root re-sampling (p_i ~ 1/sqrt(n_class))"

    def sampler_weights(self, data: TrainData) -> np.ndarray:
        return class_balanced_weights(data.class_ids.numpy(), 0.5)
