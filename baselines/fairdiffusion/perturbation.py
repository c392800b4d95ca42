"""Fair Bayesian Perturbation: the per-sample loss weights of FairDiffusion and the group-loss
gap they are tuned to close (Luo et al., "FairDiffusion: Enhancing equity in latent diffusion
models via fair Bayesian perturbation", Science Advances 2025, arXiv:2412.20374).

Each sensitive attribute a (sex, race, ...) has one perturbation scale per group g,
sigma[a, g] in [0, 1]; the K = sum_a |groups(a)| scales form one vector sigma. A training
sample i in groups g_a(i) gets the loss weight

    w_i = max(w_min, 1 + sum_a sigma[a, g_a(i)] * xi_{i,a}),   xi_{i,a} ~ N(0, 1) i.i.d.,

with w_min = 0.1; a sample whose value of attribute a is missing gets no term for a. So the
loss of a group with a large sigma is perturbed strongly (explored), a group with sigma = 0
is trained as usual. The objective that chooses sigma is the fairness of the per-group
training losses,

    gap = sum_a ( max_g mean_{i in g} l_i - min_g mean_{i in g} l_i ),

over the groups of a present in the batch (an attribute with fewer than two groups present
adds 0), with l_i the sample's unweighted diffusion loss; :mod:`.controller` maximises -gap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

DEFAULT_MIN_WEIGHT = 0.1
MISSING = -1  # group index of a missing attribute value


@dataclass(frozen=True)
class GroupLayout:
    """The (attribute, group) pairs that carry a sigma, flattened attribute by attribute."""

    attributes: tuple[tuple[str, tuple[str, ...]], ...]

    def __post_init__(self):
        if not self.attributes:
            raise ValueError("GroupLayout needs at least one attribute")
        for name, groups in self.attributes:
            if not groups:
                raise ValueError(f"attribute {name!r} has no groups")
            if len(set(groups)) != len(groups):
                raise ValueError(f"attribute {name!r} lists a group twice: {groups}")

    @classmethod
    def from_mapping(cls, groups: Mapping[str, Sequence[str]]) -> GroupLayout:
        return cls(tuple((a, tuple(g)) for a, g in groups.items()))

    @property
    def names(self) -> tuple[str, ...]:
        """The attribute names, in order."""
        return tuple(a for a, _ in self.attributes)

    @property
    def size(self) -> int:
        """K, the length of sigma."""
        return sum(len(g) for _, g in self.attributes)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Index in sigma of each attribute's first group."""
        out, k = [], 0
        for _, groups in self.attributes:
            out.append(k)
            k += len(groups)
        return tuple(out)

    @property
    def labels(self) -> tuple[str, ...]:
        """``attribute=group`` for each entry of sigma (for logs)."""
        return tuple(f"{a}={g}" for a, groups in self.attributes for g in groups)

    def encode(self, rows: Sequence[Mapping[str, str | None]]) -> torch.Tensor:
        """Group index of each row for each attribute, (B, A) int64; ``None`` -> MISSING."""
        index = [{g: j for j, g in enumerate(groups)} for _, groups in self.attributes]
        out = torch.full((len(rows), len(self.attributes)), MISSING, dtype=torch.int64)
        for i, row in enumerate(rows):
            for a, (name, groups) in enumerate(self.attributes):
                if name not in row:
                    raise KeyError(f"row {i} has no attribute {name!r}")
                value = row[name]
                if value is None:
                    continue
                if value not in index[a]:
                    raise ValueError(
                        f"row {i}: {name}={value!r} is not one of the layout's groups {groups}"
                    )
                out[i, a] = index[a][value]
        return out

    def check_groups(self, groups: torch.Tensor) -> None:
        if groups.ndim != 2 or groups.shape[1] != len(self.attributes):
            raise ValueError(f"groups must have shape (B, {len(self.attributes)}), "
                             f"got {tuple(groups.shape)}")
        for a, (name, g) in enumerate(self.attributes):
            col = groups[:, a]
            if bool(((col < MISSING) | (col >= len(g))).any()):
                raise ValueError(f"group index of {name!r} outside [-1, {len(g) - 1}]")


def perturbation_weights(
    sigma: torch.Tensor,
    groups: torch.Tensor,
    xi: torch.Tensor,
    layout: GroupLayout,
    *,
    min_weight: float = DEFAULT_MIN_WEIGHT,
) -> torch.Tensor:
    """w_i = max(min_weight, 1 + sum_a sigma[a, g_a(i)] xi_{i,a}) for a batch, shape (B,).

    Args:
        sigma: (K,) perturbation scales, laid out as ``layout``.
        groups: (B, A) group indices from :meth:`GroupLayout.encode` (MISSING = no term).
        xi: (B, A) standard normal draws.
    """
    layout.check_groups(groups)
    if sigma.shape != (layout.size,):
        raise ValueError(f"sigma must have shape ({layout.size},), got {tuple(sigma.shape)}")
    if xi.shape != groups.shape:
        raise ValueError(f"xi must have the shape of groups {tuple(groups.shape)}, "
                         f"got {tuple(xi.shape)}")
    offsets = torch.tensor(layout.offsets, dtype=torch.int64, device=groups.device)
    present = groups != MISSING
    flat = torch.where(present, groups + offsets, torch.zeros_like(groups))
    scale = sigma.to(device=groups.device, dtype=xi.dtype)[flat] * present.to(xi.dtype)
    return torch.clamp(1.0 + (scale * xi).sum(dim=1), min=min_weight)


def group_loss_gap(
    per_sample_loss: torch.Tensor, groups: torch.Tensor, layout: GroupLayout
) -> float:
    """sum_a (max_g mean loss of g - min_g mean loss of g) over the groups present."""
    layout.check_groups(groups)
    loss = per_sample_loss.detach().to(torch.float64).reshape(-1)
    if loss.shape[0] != groups.shape[0]:
        raise ValueError(f"{loss.shape[0]} losses for {groups.shape[0]} group rows")
    gap = 0.0
    for a, (_, names) in enumerate(layout.attributes):
        means = [loss[groups[:, a] == g].mean() for g in range(len(names))
                 if bool((groups[:, a] == g).any())]
        if len(means) >= 2:
            stacked = torch.stack(means)
            gap += float(stacked.max() - stacked.min())
    return gap
