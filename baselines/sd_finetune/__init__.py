"""``sd-finetune``: plain fine-tuning of a text-conditioned diffusion model.

The reference every diffusion method is compared with: the DDPM loss on the training set as
it is, examples drawn uniformly (epoch by epoch), prompts from the shared prompt builder.
At profile ``paper`` this is Stable Diffusion v1-4 fine-tuned with FairGen's recipe; at the
small profiles the same classes are trained from scratch.
"""

from __future__ import annotations

from benchmark.diffusion import DiffusionGenerator


class SDFinetune(DiffusionGenerator):
    name = "sd-finetune"
    description = "plain fine-tuning of a text-conditioned diffusion model (Stable Diffusion)"
