"""CompDiff's Hierarchical Conditioner Network (HCN) as a context hook of the shared stack.

One learned embedding per value of each composed attribute (the "grandparents"), a composer
MLP per attribute pair ("parents"), a child MLP over the concatenated pair outputs, a
variational bottleneck and a projection to ONE cross-attention token appended after the text
tokens; auxiliary classifiers read the attributes back from that token. Follows
``gen_source/hcn.py`` of github.com/mahmoudibrahim98/CompDiff (``HierarchicalConditioner``):

    e_a = E_a[g_a]                                     (init N(0, 0.02^2))
    h_ab = MLP_ab([e_a; e_b])    MLP = LayerNorm, Linear(2d, 2d), SiLU, Dropout, Linear(2d, d)
    h = MLP_child([h_ab; h_ac; ...])    (k >= 3 attributes: P*d -> 2d -> d)
    h = h_ab                            (k = 2: the one pair, as the code's sex x race config)
    h = e_a                             (k = 1: nothing to compose; our extension)
    mu = W_mu h,  log sigma = clamp(W_s h + b_s, -5, 1)   (b_s = -1, W ~ N(0, 0.01^2))
    z = mu + sigma * eps (training), z = mu (evaluation)
    token = Linear(LayerNorm(z))    (cross-attention width D)
    logits_a = Linear(Dropout(SiLU(Linear(LayerNorm(token)))))   (one classifier per attribute)

Loss terms (kept in :attr:`HierarchicalConditioner.last_losses` at every training forward,
for the method's ``training_loss``; computed on every example of the batch, as the code does):

    KL  = mean_i  -1/2 sum_j (1 + 2 log sigma_ij - mu_ij^2 - sigma_ij^2)
          (= KL(N(mu, sigma^2) || N(0, I)); Kingma & Welling 2014, appendix B)
    cos = mean_i  1 - cos(h_i, sum_a e_a,i)          (the compositional-consistency term)
    aux = mean_a  CE(logits_a, g_a)                  (mean over attributes of the batch-mean CE)

In training, every random draw (the reparameterised noise and the dropout masks) comes from
the generator set by :meth:`HierarchicalConditioner.use_generator` (the trainer's per-step
one), so a resumed run repeats it.

Token dropout for classifier-free guidance: where ``dropped`` is set the token is zeroed (the
code multiplies it by the keep mask); the classifiers read the token before dropout.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from benchmark.diffusion import ContextHook


def _mlp(d_in: int, d_hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, d_hidden), nn.SiLU(),
                         nn.Dropout(dropout), nn.Linear(d_hidden, d_out))


def kl_standard_normal(mu: torch.Tensor, logsigma: torch.Tensor) -> torch.Tensor:
    """mean_i KL(N(mu_i, diag sigma_i^2) || N(0, I)) = mean_i -1/2 sum_j (1 + 2 log sigma_ij
    - mu_ij^2 - sigma_ij^2) (Kingma & Welling, "Auto-Encoding Variational Bayes", 2014,
    appendix B; CompDiff's ``train_loop.py``)."""
    return (-0.5 * (1 + 2 * logsigma - mu.pow(2) - torch.exp(2 * logsigma)).sum(-1)).mean()


def composition_loss(child: torch.Tensor, embeddings: list[torch.Tensor]) -> torch.Tensor:
    """mean_i (1 - cos(child_i, sum_a e_a,i)): CompDiff's compositional-consistency term
    (``compute_compositional_loss``): the composed code stays aligned with the additive
    composition of its attribute embeddings."""
    return (1 - F.cosine_similarity(child, sum(embeddings), dim=-1)).mean()


class HierarchicalConditioner(ContextHook):
    """The HCN (see the module docstring).

    Args:
        attributes: the composed sensitive attributes, in order.
        group_names: per attribute, its values in index order (``TrainData.group_names``).
        dim: the cross-attention width (``unet.config.cross_attention_dim``).
        d_node: width of the embeddings and composers (CompDiff: 256).
        aux_hidden: hidden width of the auxiliary classifiers (CompDiff: 512).
        dropout: dropout of the composers and classifiers (CompDiff: 0.1).
        seed: seeds the initialisation.
    """

    @register_to_config
    def __init__(self, attributes: list[str], group_names: list[list[str]], dim: int,
                 d_node: int = 256, aux_hidden: int = 512, dropout: float = 0.1,
                 seed: int = 0):
        super().__init__()
        if not attributes or len(attributes) != len(group_names):
            raise ValueError(f"HierarchicalConditioner: one list of group names per attribute "
                             f"is needed, got attributes {attributes!r} and {len(group_names)} "
                             "lists")
        self.attributes = list(attributes)
        k, d = len(attributes), d_node
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embeddings = nn.ModuleList(nn.Embedding(len(n), d) for n in group_names)
            self.pairs = list(itertools.combinations(range(k), 2))
            self.composers = nn.ModuleList(_mlp(2 * d, 2 * d, d, dropout) for _ in self.pairs)
            self.child = (_mlp(len(self.pairs) * d, 2 * d, d, dropout)
                          if len(self.pairs) > 1 else None)
            self.mu_head = nn.Linear(d, d)
            self.logsigma_head = nn.Linear(d, d)
            self.proj = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, dim))
            self.classifiers = nn.ModuleList(_mlp(dim, aux_hidden, len(n), dropout)
                                             for n in group_names)
            for e in self.embeddings:
                nn.init.normal_(e.weight, 0.0, 0.02)
            nn.init.normal_(self.mu_head.weight, 0.0, 0.01)
            nn.init.zeros_(self.mu_head.bias)
            nn.init.normal_(self.logsigma_head.weight, 0.0, 0.01)
            nn.init.constant_(self.logsigma_head.bias, -1.0)
        self.last_losses: dict[str, torch.Tensor] = {}
        self._generator: torch.Generator | None = None

    def encode(self, group_ids: dict[str, torch.Tensor], *, generator: torch.Generator | None
               = None) -> dict[str, torch.Tensor]:
        """Every intermediate of the network for a batch of group ids: ``embeddings``
        (list), ``child``, ``mu``, ``logsigma``, ``z``, ``token`` (B, D), ``logits`` (list).
        The reparameterised draw uses ``generator`` (CPU) in training; the mean in eval."""
        missing = [a for a in self.attributes if a not in group_ids]
        if missing:
            raise KeyError(f"HierarchicalConditioner: no group ids for {', '.join(missing)} "
                           f"(has {', '.join(group_ids) or 'none'})")
        dev = self.mu_head.weight.device
        e = [emb(group_ids[a].to(dev)) for a, emb in zip(self.attributes, self.embeddings,
                                                          strict=True)]
        if not self.pairs:
            child = e[0]
        else:
            parents = [m(torch.cat([e[i], e[j]], -1))
                       for (i, j), m in zip(self.pairs, self.composers, strict=True)]
            child = parents[0] if self.child is None else self.child(torch.cat(parents, -1))
        mu = self.mu_head(child)
        logsigma = self.logsigma_head(child).clamp(-5.0, 1.0)
        if self.training:
            eps = torch.randn(mu.shape, generator=generator).to(mu)
            z = mu + torch.exp(logsigma) * eps
        else:
            z = mu
        token = self.proj(z)
        logits = [c(token) for c in self.classifiers]
        return {"embeddings": e, "child": child, "mu": mu, "logsigma": logsigma, "z": z,
                "token": token, "logits": logits}

    def losses(self, out: dict[str, torch.Tensor], group_ids: dict[str, torch.Tensor]
               ) -> dict[str, torch.Tensor]:
        """The three loss terms of one :meth:`encode` output (see the module docstring)."""
        dev = out["mu"].device
        ce = [F.cross_entropy(lg, group_ids[a].to(dev))
              for a, lg in zip(self.attributes, out["logits"], strict=True)]
        return {"kl": kl_standard_normal(out["mu"], out["logsigma"]),
                "cos": composition_loss(out["child"], out["embeddings"]),
                "aux_ce": torch.stack(ce).mean()}

    def use_generator(self, generator: torch.Generator | None) -> None:
        """The generator of the next training forward's reparameterised draw (the trainer's
        per-step generator, so a resumed run repeats it)."""
        self._generator = generator

    def forward(self, hidden_states: torch.Tensor, group_ids: dict[str, torch.Tensor],
                dropped: torch.Tensor) -> torch.Tensor:
        g = self._generator
        if self.training and g is not None:
            # dropout masks from the step's generator too (nn.Dropout draws from the global
            # RNG, which a resumed run does not repeat): a forked RNG seeded by it
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=g))
            dev = self.mu_head.weight.device
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(seed)
                out = self.encode(group_ids, generator=g)
        else:
            out = self.encode(group_ids, generator=g)
        if self.training:
            self.last_losses = self.losses(out, group_ids)
        keep = (~dropped.to(out["token"].device)).to(out["token"].dtype)[:, None]
        token = (out["token"] * keep)[:, None].to(hidden_states.dtype)
        return torch.cat([hidden_states, token.to(hidden_states.device)], dim=1)
