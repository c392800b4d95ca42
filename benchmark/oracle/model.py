"""Phantom oracles: classifiers that read the finding, its phenotype and the attributes of a
phantom image, trained from scratch on a large phantom population.

An oracle is a timm backbone (``pretrained=False``) with one linear head per label: the
finding, the phenotype (the subgroup-specific appearance the phantom gave the finding) and
each attribute of :attr:`PhantomSpec.attributes`. Its penultimate layer (the backbone's pooled
features) is exposed by :meth:`Oracle.features` for a domain Fréchet distance (``fd_oracle``).

Training population: balanced over the spec's (finding x balance attribute) cells, drawn with
:func:`~benchmark.oracle.phantoms.draw_cell_params` on seeds of the stream ``oracle-train``
(independent of the benchmark data, which comes from the phantoms' ``generate`` and
``reference`` streams). The held-out population uses the stream ``oracle-heldout``.

Trained oracles are cached under ``$FAIRSYNTH_CACHE/oracles/<key>/`` where the key hashes the
phantom's own cache key (phantom version, schema version, calibration), the full
:class:`OracleConfig`, the label vocabularies, the oracle code version and the timm version.
Training saves a checkpoint after every epoch and resumes from it; every write is atomic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ..metrics.features import ImageLike, to_uint8_array
from ..profiles import PROFILES, Profile
from ..settings import OracleConfig
from .phantoms import PhantomSpec, draw_population, phantom_spec

log = logging.getLogger(__name__)

#: Bump when training or the network changes in a way the config does not capture.
ORACLE_CODE_VERSION = "1"

TRAIN_STREAM = "oracle-train"
HELDOUT_STREAM = "oracle-heldout"


#: The oracle setting of the smoke profile (32 px, a small population, few epochs): the fast
#: one the tests use. Its values live in the smoke profile (``benchmark/profiles.py``).
SMOKE_CONFIG: OracleConfig = PROFILES.get("smoke").oracle


def config_for_profile(profile: Profile | str, image_size: int) -> OracleConfig:
    """The oracle setting of a run profile (its ``oracle`` block in ``benchmark/profiles.py``;
    a name is looked up in :data:`~benchmark.profiles.PROFILES`) at the task's
    ``image_size``."""
    prof = PROFILES.get(profile) if isinstance(profile, str) else profile
    return replace(prof.oracle, image_size=int(image_size))


# --------------------------------------------------------------------------------------------
# Network and image handling


class _Net(nn.Module):
    def __init__(self, arch: str, arch_kwargs: Mapping[str, Any], channels: int,
                 head_sizes: Mapping[str, int], image_size: int):
        super().__init__()
        import timm  # the classifier library of the project; imported where it is needed

        self.backbone = timm.create_model(arch, pretrained=False, num_classes=0,
                                          in_chans=channels, **dict(arch_kwargs))
        with torch.no_grad():
            was = self.backbone.training
            self.backbone.eval()
            dim = self.backbone(torch.zeros(1, channels, image_size, image_size)).shape[1]
            self.backbone.train(was)
        self.dim = int(dim)
        self.heads = nn.ModuleDict({k: nn.Linear(self.dim, n) for k, n in head_sizes.items()})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        f = self.backbone(x)
        return f, {k: h(f) for k, h in self.heads.items()}


def _prepare(images: Sequence[ImageLike], channels: int, size: int) -> torch.Tensor:
    """uint8 images -> float tensor (N, C, size, size) scaled to [-1, 1].

    Grayscale and RGB are converted to the oracle's channels with PIL (``L`` uses ITU-R 601
    luma); other sizes are resized with PIL's bilinear filter (antialiased when shrinking).
    """
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(images), size, size, channels), np.uint8)
    for i, im in enumerate(images):
        arr = to_uint8_array(im, index=i)
        if arr.ndim != (2 if channels == 1 else 3) or arr.shape[:2] != (size, size):
            pil = Image.fromarray(arr).convert(mode)
            if pil.size != (size, size):
                pil = pil.resize((size, size), Image.BILINEAR)
            arr = np.asarray(pil)
        out[i] = arr.reshape(size, size, channels)
    t = torch.from_numpy(out).permute(0, 3, 1, 2).float()
    return t.div_(127.5).sub_(1.0)


def _batch_tensor(batch: torch.Tensor) -> torch.Tensor:
    """A uint8 batch (N, H, W) or (N, H, W, 3) already at the oracle's size -> as _prepare."""
    x = batch.unsqueeze(1) if batch.ndim == 3 else batch.permute(0, 3, 1, 2)
    return x.float().div_(127.5).sub_(1.0)


# --------------------------------------------------------------------------------------------
# The oracle


class Oracle:
    """A trained phantom oracle (use :func:`get_oracle` to build or load one).

    Attributes:
        spec: the phantom it reads.
        config: its :class:`OracleConfig`.
        heads: label name -> vocabulary (``finding``, ``phenotype``, then the attributes).
        population: (finding, phenotype, attributes...) of every training image, for
            :meth:`expected_phenotypes`.
        key: its cache key.
    """

    def __init__(self, spec: PhantomSpec, config: OracleConfig, heads: Mapping[str, Sequence[str]],
                 population: Sequence[Mapping[str, str | None]], key: str):
        self.spec = spec
        self.config = config
        self.heads = {k: tuple(v) for k, v in heads.items()}
        self.population = [dict(r) for r in population]
        self.key = key
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, global RNG untouched
            torch.manual_seed(config.seed)
            self.net = _Net(config.arch, config.arch_kwargs, spec.channels,
                            {k: len(v) for k, v in self.heads.items()}, config.image_size)
        self.net.eval()
        self.train_seconds: float | None = None

    def __repr__(self) -> str:
        return (f"Oracle({self.spec.dataset!r}, {self.config.arch}, {self.config.image_size} px, "
                f"key={self.key[:12]})")

    @property
    def feature_dim(self) -> int:
        return self.net.dim

    def _run(self, images: Sequence[ImageLike], batch_size: int
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        feats, probs = [], {k: [] for k in self.heads}
        self.net.eval()
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = _prepare(images[start:start + batch_size], self.spec.channels,
                             self.config.image_size)
                f, logits = self.net(x)
                feats.append(f.double().numpy())
                for k, v in logits.items():
                    probs[k].append(torch.softmax(v.double(), dim=1).numpy())
        if not feats:
            return (np.empty((0, self.feature_dim)),
                    {k: np.empty((0, len(v))) for k, v in self.heads.items()})
        return np.concatenate(feats), {k: np.concatenate(v) for k, v in probs.items()}

    def features(self, images: Sequence[ImageLike], *, batch_size: int = 256) -> np.ndarray:
        """Penultimate-layer features (the backbone's pooled output), (N, d) float64."""
        return self._run(images, batch_size)[0]

    def predict_proba(self, images: Sequence[ImageLike], *, batch_size: int = 256
                      ) -> dict[str, np.ndarray]:
        """Softmax probabilities per head: name -> (N, len(vocabulary))."""
        return self._run(images, batch_size)[1]

    def predict(self, images: Sequence[ImageLike], *, batch_size: int = 256
                ) -> dict[str, list[str]]:
        """The most probable value of every head for every image."""
        probs = self.predict_proba(images, batch_size=batch_size)
        return {k: [self.heads[k][i] for i in p.argmax(axis=1)] for k, p in probs.items()}

    def expected_phenotypes(self, request: Mapping[str, str | None]) -> frozenset[str]:
        """The phenotypes the phantom draws for a requested cell (``finding`` and attribute
        values; ``None`` or an attribute the oracle does not know leaves it free), read from
        the training population. Empty when no training image matches."""
        req = {k: v for k, v in request.items()
               if v is not None and (k == "finding" or k in self.spec.attributes)}
        return frozenset(r["phenotype"] for r in self.population  # type: ignore[misc]
                         if all(r.get(k) == v for k, v in req.items()))

    # -- persistence

    def state(self) -> dict[str, Any]:
        return {"dataset": self.spec.dataset, "config": self.config.as_dict(),
                "heads": {k: list(v) for k, v in self.heads.items()},
                "population": self.population, "key": self.key,
                "train_seconds": self.train_seconds,
                "state_dict": self.net.state_dict()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Oracle:
        oracle = cls(phantom_spec(state["dataset"]), OracleConfig.from_dict(state["config"]),
                     state["heads"], state["population"], state["key"])
        oracle.net.load_state_dict(state["state_dict"])
        oracle.net.eval()
        oracle.train_seconds = state.get("train_seconds")
        return oracle


# --------------------------------------------------------------------------------------------
# Populations, cache key, training


def heads_of(spec: PhantomSpec, population: Sequence[Mapping[str, str | None]]
             ) -> dict[str, tuple[str, ...]]:
    """Vocabulary of every head: the spec's findings, the phenotypes seen in ``population``
    (sorted), and the schema vocabulary of each attribute."""
    from ..schema import ATTRIBUTES

    heads: dict[str, tuple[str, ...]] = {"finding": spec.findings}
    heads["phenotype"] = tuple(sorted({str(r["phenotype"]) for r in population}))
    for attr in spec.attributes:
        heads[attr] = tuple(ATTRIBUTES[attr])
    return heads


def render_population(spec: PhantomSpec, params: Sequence[Any], image_size: int,
                      *, desc: str = "render", progress: bool = True) -> np.ndarray:
    """Images of ``params`` as one uint8 array (N, H, W[, 3])."""
    return np.stack([spec.render(p, image_size) for p in tqdm(
        params, desc=f"{spec.dataset} {desc}", unit="img", leave=False, disable=not progress)])


def oracle_key(spec: PhantomSpec, config: OracleConfig) -> str:
    """sha256 of everything a trained oracle depends on."""
    import timm

    phantom_key = spec.phantom.cache_key("oracle", **config.as_dict())
    payload = {"phantom_key": phantom_key, "dataset": spec.dataset, "version": spec.version,
               "attributes": list(spec.attributes), "balance": list(spec.balance),
               "findings": list(spec.findings), "code": ORACLE_CODE_VERSION,
               "timm": timm.__version__, "torch": torch.__version__.split("+")[0]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def oracle_cache_dir() -> Path:
    """``$FAIRSYNTH_CACHE/oracles`` (default ``~/.cache/fairsynth-bench/oracles``)."""
    return Path(os.environ.get("FAIRSYNTH_CACHE", "~/.cache/fairsynth-bench")).expanduser() \
        / "oracles"


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _labels(oracle: Oracle, truths: Sequence[Mapping[str, str | None]]) -> dict[str, torch.Tensor]:
    out = {}
    for head, vocab in oracle.heads.items():
        index = {v: i for i, v in enumerate(vocab)}
        out[head] = torch.tensor([index[t[head]] for t in truths], dtype=torch.long)
    return out


def train_oracle(spec: PhantomSpec, config: OracleConfig, *, checkpoint: Path | None = None,
                 progress: bool = True) -> Oracle:
    """Train an oracle from scratch (deterministic per ``config.seed``).

    With ``checkpoint`` (a file path), the model, optimiser and schedule are saved there after
    every epoch and training resumes from it; the minibatch order of epoch ``e`` depends only
    on ``(seed, e)``, so a resumed run ends with the same weights as an uninterrupted one.
    """
    t0 = time.perf_counter()
    params = draw_population(spec, config.n_train, seed=config.seed, stream=TRAIN_STREAM)
    truths = [spec.truth(p) for p in params]
    key = oracle_key(spec, config)
    oracle = Oracle(spec, config, heads_of(spec, truths), truths, key)
    x_all = torch.from_numpy(render_population(spec, params, config.image_size,
                                               desc="oracle population", progress=progress))
    y_all = _labels(oracle, truths)
    net = oracle.net
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(params) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.2)
    start_epoch = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        if state.get("key") == key:
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            start_epoch = int(state["epoch"])
            t0 -= float(state.get("seconds", 0.0))
            log.info("oracle %s: resuming after epoch %d", spec.dataset, start_epoch)
    loss_fn = nn.CrossEntropyLoss()
    with tqdm(total=config.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
              desc=f"oracle {spec.dataset}", unit="step", leave=False,
              disable=not progress) as bar:
        for epoch in range(start_epoch, config.epochs):
            net.train()
            g = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            order = torch.randperm(len(params), generator=g)
            for start in range(0, len(order), config.batch_size):
                idx = order[start:start + config.batch_size]
                if len(idx) < 2:  # batch norm needs two samples
                    bar.update()
                    sched.step()
                    continue
                x = _batch_tensor(x_all[idx])
                _, logits = net(x)
                loss = sum(loss_fn(logits[k], y_all[k][idx]) for k in oracle.heads)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch + 1)
            if checkpoint is not None and epoch + 1 < config.epochs:
                _save_atomic({"key": key, "epoch": epoch + 1, "net": net.state_dict(),
                              "opt": opt.state_dict(), "sched": sched.state_dict(),
                              "seconds": time.perf_counter() - t0}, checkpoint)
    net.eval()
    oracle.train_seconds = time.perf_counter() - t0
    return oracle


_MEMORY: dict[tuple[str, str], Oracle] = {}


def get_oracle(dataset: str, config: OracleConfig | Mapping[str, Any] | None = None, *,
               cache_dir: str | os.PathLike[str] | None = None, progress: bool = True) -> Oracle:
    """The oracle of a phantom dataset for ``config``: from memory, the disk cache, or trained
    now (and then cached). ``cache_dir`` defaults to :func:`oracle_cache_dir`.

    Raises:
        NotAPhantomError: ``dataset`` is not a phantom.
    """
    spec = phantom_spec(dataset, who="an oracle")
    if config is None:
        config = OracleConfig()
    elif not isinstance(config, OracleConfig):
        config = OracleConfig.from_dict(config)
    root = Path(cache_dir).expanduser() if cache_dir is not None else oracle_cache_dir()
    key = oracle_key(spec, config)
    hit = _MEMORY.get((str(root), key))
    if hit is not None:
        return hit
    final = root / key[:24] / "oracle.pt"
    if final.is_file():
        try:
            oracle = Oracle.from_state(torch.load(final, weights_only=True))
        except Exception as err:  # a damaged entry is rebuilt, not trusted
            log.warning("ignoring unreadable oracle cache entry %s (%s)", final, err)
        else:
            if oracle.key == key:
                _MEMORY[(str(root), key)] = oracle
                return oracle
    checkpoint = root / key[:24] / "partial" / "checkpoint.pt"
    oracle = train_oracle(spec, config, checkpoint=checkpoint, progress=progress)
    _save_atomic(oracle.state(), final)
    desc = {"dataset": dataset, "key": key, "config": config.as_dict(),
            "train_seconds": oracle.train_seconds}
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".config.json.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(desc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, final.parent / "config.json")
    shutil.rmtree(checkpoint.parent, ignore_errors=True)
    _MEMORY[(str(root), key)] = oracle
    return oracle


def heldout_population(oracle: Oracle, n: int, *, seed: int = 0
                       ) -> tuple[np.ndarray, list[dict[str, str | None]]]:
    """``n`` fresh images balanced over the oracle's cells (stream ``oracle-heldout``, so
    disjoint from its training population) with their true labels."""
    spec = oracle.spec
    params = draw_population(spec, n, seed=seed, stream=HELDOUT_STREAM)
    images = render_population(spec, params, oracle.config.image_size, desc="held-out")
    return images, [spec.truth(p) for p in params]


def oracle_accuracy(oracle: Oracle, n: int = 1000, *, seed: int = 0) -> dict[str, float]:
    """Accuracy of every head on :func:`heldout_population` ``(n, seed)``: the fraction of
    images whose predicted value equals the true one."""
    images, truths = heldout_population(oracle, n, seed=seed)
    pred = oracle.predict(list(images))
    return {head: float(np.mean([p == t[head] for p, t in zip(pred[head], truths, strict=True)]))
            for head in oracle.heads}
