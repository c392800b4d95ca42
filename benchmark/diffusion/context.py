"""The context hook: how a method maps the text encoder's hidden states to the UNet's
cross-attention context (e.g. CompDiff appends a learned demographic token).

A hook is a :class:`ContextHook`, a diffusers ``ModelMixin`` + ``ConfigMixin`` (so an
``nn.Module`` whose constructor arguments are captured with ``@register_to_config``) that
implements

    forward(hidden_states (B, L, D), group_ids {attr: (B,) long}, dropped (B,) bool)
        -> context (B, L', D)

``group_ids`` index :attr:`TrainData.group_names` per sensitive attribute (the batch's
attribute values), ``dropped`` marks the examples whose prompt was replaced by the empty one
(condition dropout in training; the unconditional branch of classifier-free guidance at
sampling), so a hook can drop its own token there too. A method sets ``backbone.context =
MyHook(...)`` before training; then

- :class:`~benchmark.diffusion.DiffusionTrainer` applies it in every UNet call
  (``StepBatch.predict``; ``StepBatch.to_context`` gives the context itself) and trains its
  parameters with the trained model (UNet or ControlNet): one optimizer, gradient clipping,
  EMA, and the module's weights in every accelerate checkpoint, restored on resume;
- :func:`~benchmark.diffusion.sample_images` applies it to both guidance branches (it then
  needs ``group_ids`` per requested image);
- :meth:`Backbone.save_pretrained` writes it to ``context/`` with its own ``save_pretrained``
  (``config.json`` + safetensors); ``Backbone.from_pretrained(d, context_cls=MyHook)`` reads
  it back.

A hook that produces extra loss terms (KL, auxiliary classifiers) keeps them on itself in
``forward`` (e.g. ``self.last_stats``) for the method's ``training_loss`` to read.

:class:`GroupTokenContext` is the simplest such hook (one learned token from the groups,
appended after the text tokens); it is a building block and the test fixture of the hook, not
a method.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class ContextHook(ModelMixin, ConfigMixin):
    """Base of the context hooks: text states (B, L, D) -> cross-attention context (B, L', D).
    Subclasses register their constructor with ``@register_to_config`` and implement
    :meth:`forward`."""

    def forward(self, hidden_states: torch.Tensor, group_ids: dict[str, torch.Tensor],
                dropped: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class GroupTokenContext(ContextHook):
    """Appends one learned token to the text states: the sum of one embedding per sensitive
    attribute value of the example, or a learned null token where the condition is dropped:

        token_i = sum_a E_a[g_a(i)]   (dropped_i: token_i = e_null)
        context_i = [h_i1, ..., h_iL, token_i]        (length L + 1)

    Embeddings start at N(0, ``init_std``^2) (seeded by ``seed``), the null token at 0.

    Args:
        attributes: the sensitive attributes, in order.
        group_sizes: number of values of each attribute (``len(TrainData.group_names[a])``).
        dim: the cross-attention width (``unet.config.cross_attention_dim``).
    """

    @register_to_config
    def __init__(self, attributes: list[str], group_sizes: list[int], dim: int,
                 init_std: float = 0.02, seed: int = 0):
        super().__init__()
        if len(attributes) != len(group_sizes) or not attributes:
            raise ValueError(f"GroupTokenContext: one group size per attribute is needed, got "
                             f"attributes {attributes!r} and sizes {group_sizes!r}")
        self.attributes = list(attributes)
        self.embeddings = nn.ModuleList(nn.Embedding(int(n), dim) for n in group_sizes)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for e in self.embeddings:
                e.weight.copy_(torch.randn(e.weight.shape, generator=g) * init_std)
        self.null_token = nn.Parameter(torch.zeros(dim))

    def forward(self, hidden_states: torch.Tensor, group_ids: dict[str, torch.Tensor],
                dropped: torch.Tensor) -> torch.Tensor:
        missing = [a for a in self.attributes if a not in group_ids]
        if missing:
            raise KeyError(f"GroupTokenContext: no group ids for {', '.join(missing)} "
                           f"(has {', '.join(group_ids) or 'none'})")
        dev = hidden_states.device
        token = sum(e(group_ids[a].to(dev)) for a, e in zip(self.attributes, self.embeddings,
                                                              strict=True))
        token = torch.where(dropped.to(dev)[:, None], self.null_token.expand_as(token), token)
        return torch.cat([hidden_states, token[:, None].to(hidden_states.dtype)], dim=1)
