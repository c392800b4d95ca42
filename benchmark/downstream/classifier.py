"""Image classifiers for the downstream evaluation: timm backbones, a seeded training loop
with early stopping on the validation split, FairGen's adaptive inverse-performance
reweighting, and per-epoch checkpoints so a killed training resumes where it stopped.

The training loop is written here rather than taken from a trainer library because it needs
three things together that none offers as-is on a CPU: per-subgroup loss weights recomputed
from the previous epoch's validation accuracy, a bit-identical resume (shuffling seeded per
epoch, checkpoint written atomically after each epoch), and no process spawning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..metrics.features import WeightsNotFoundError
from .config import BACKBONES, DownstreamConfig

log = logging.getLogger(__name__)

#: Bump when a change here changes trained classifiers (invalidates checkpoints).
CLASSIFIER_CODE_VERSION = "1"

#: Added to a group's validation accuracy before inverting it (FairGen).
REWEIGHT_EPS = 1e-6


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ArrayData:
    """Images as a uint8 array (N, C, S, S), class indices (N,), and each sample's subgroup
    key (N,) (used by the reweighting)."""

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images: expected uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{self.images.shape}")
        if len(self.labels) != n or len(self.groups) != n:
            raise ValueError(f"{n} images but {len(self.labels)} labels and "
                             f"{len(self.groups)} group keys")

    def __len__(self) -> int:
        return len(self.images)

    def digest(self) -> str:
        """sha256 of the images, labels and group keys (part of checkpoint keys)."""
        h = hashlib.sha256()
        h.update(str(self.images.shape).encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(self.labels.astype(np.int64).tobytes())
        h.update("\x1f".join(map(str, self.groups)).encode())
        return h.hexdigest()

    def subset(self, idx: np.ndarray) -> ArrayData:
        return ArrayData(self.images[idx], self.labels[idx], self.groups[idx])

    @staticmethod
    def concat(parts: Sequence[ArrayData]) -> ArrayData:
        return ArrayData(np.concatenate([p.images for p in parts]),
                         np.concatenate([p.labels for p in parts]),
                         np.concatenate([p.groups for p in parts]))


def images_to_array(images: Sequence[Image.Image], *, channels: int, size: int,
                    progress: bool = False, desc: str = "decoding") -> np.ndarray:
    """PIL images -> uint8 (N, channels, size, size); resized with PIL bilinear (antialiased)
    where their size differs."""
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(images), channels, size, size), dtype=np.uint8)
    for i, img in enumerate(tqdm(images, desc=desc, disable=not progress, leave=False)):
        img = img.convert(mode)
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        a = np.asarray(img)
        out[i] = a[None] if channels == 1 else a.transpose(2, 0, 1)
    return out


# --------------------------------------------------------------------------- models


def cached_pretrained_weights(timm_name: str) -> Path | None:
    """The local file of timm's default ImageNet weights for ``timm_name``, or None.

    Looks in the Hugging Face hub cache (``$HF_HOME``/``$HF_HUB_CACHE``, where timm keeps
    them) and in the torch hub checkpoint folder (older timm); never touches the network.
    """
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    if cfg is None:
        return None
    if cfg.file and Path(cfg.file).is_file():
        return Path(cfg.file)
    if cfg.hf_hub_id:
        for filename in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin"):
            if filename:
                hit = try_to_load_from_cache(cfg.hf_hub_id, filename)
                if isinstance(hit, str) and Path(hit).is_file():
                    return Path(hit)
    if cfg.url:
        p = Path(torch.hub.get_dir()) / "checkpoints" / cfg.url.rsplit("/", 1)[-1]
        if p.is_file():
            return p
    return None


def build_backbone(name: str, *, n_classes: int, in_chans: int, image_size: int,
                   pretrained: bool) -> torch.nn.Module:
    """A timm classifier for ``n_classes`` on ``in_chans``-channel images.

    With ``pretrained``, ImageNet weights are read from a local cache only
    (:func:`cached_pretrained_weights`); when they are not there this raises
    :class:`WeightsNotFoundError` with one line naming the model and how to get the weights.
    timm adapts the first convolution to ``in_chans`` and replaces the classifier head.
    """
    import timm

    spec = BACKBONES.get(name)
    kwargs = dict(spec.kwargs)
    if spec.fixed_input:
        kwargs["img_size"] = image_size
    if pretrained and not spec.pretrainable:
        raise ValueError(f"backbone {name!r} has no published pretrained weights")
    if pretrained:
        path = cached_pretrained_weights(spec.timm_name)
        if path is None:
            raise WeightsNotFoundError(
                f"ImageNet weights of timm model {spec.timm_name!r} (backbone {name!r}) are not "
                f"in the local cache; fetch them once with `python -c \"import timm; "
                f"timm.create_model('{spec.timm_name}', pretrained=True)\"` where there is "
                "network, or set the profile's downstream pretrained=False to train from scratch"
            )
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
    return timm.create_model(spec.timm_name, pretrained=pretrained, num_classes=n_classes,
                             in_chans=in_chans, **kwargs)


def _normalizer(model: torch.nn.Module, in_chans: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (in 0-1 units) of the model's pretrained config, averaged to one channel
    for grayscale input (timm sums the first conv's RGB weights for ``in_chans=1``)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = np.asarray(cfg.get("mean", (0.5, 0.5, 0.5)), dtype=np.float32)
    std = np.asarray(cfg.get("std", (0.5, 0.5, 0.5)), dtype=np.float32)
    if in_chans == 1:
        mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
    return (torch.from_numpy(mean).view(1, -1, 1, 1), torch.from_numpy(std).view(1, -1, 1, 1))


def _batch(images: np.ndarray, norm: tuple[torch.Tensor, torch.Tensor], device: torch.device
           ) -> torch.Tensor:
    x = torch.from_numpy(images).to(device=device, dtype=torch.float32).div_(255.0)
    mean, std = norm
    return (x - mean.to(device)) / std.to(device)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)`` (no change for None), then restore."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------- checkpoints


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


# --------------------------------------------------------------------------- training


@dataclass
class TrainedClassifier:
    """A trained classifier (best-validation weights) and its training history."""

    model: torch.nn.Module
    norm: tuple[torch.Tensor, torch.Tensor]
    device: torch.device
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    history: list[dict[str, Any]]
    batch_size: int
    cpu_threads: int | None = None

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C) of uint8 images (N, C, S, S), float64."""
        with torch_threads(self.cpu_threads):
            return predict_proba(self.model, images, norm=self.norm, device=self.device,
                                 batch_size=self.batch_size)


def predict_proba(model: torch.nn.Module, images: np.ndarray, *,
                  norm: tuple[torch.Tensor, torch.Tensor], device: torch.device,
                  batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            logits = model(_batch(images[s:s + batch_size], norm, device))
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    if not out:
        return np.zeros((0, 0))
    return np.concatenate(out).astype(np.float64)


def group_weights(val_pred: np.ndarray, val: ArrayData, train_groups: np.ndarray
                  ) -> dict[str, float]:
    """FairGen's adaptive inverse-performance weights: w_g proportional to
    1 / (val acc_g + 1e-6), normalised so the mean weight over the training samples is 1.

    A training group absent from the validation split gets the mean raw weight of the others.
    """
    correct = val_pred == val.labels
    raw = {str(g): 1.0 / (float(np.mean(correct[val.groups == g])) + REWEIGHT_EPS)
           for g in np.unique(val.groups)}
    fill = float(np.mean(list(raw.values()))) if raw else 1.0
    keys, counts = np.unique(train_groups.astype(str), return_counts=True)
    w = {str(k): raw.get(str(k), fill) for k in keys}
    mean = sum(w[str(k)] * c for k, c in zip(keys, counts, strict=True)) / counts.sum()
    return {k: v / mean for k, v in w.items()}


def sampler_group_weights(val_pred: np.ndarray, val: ArrayData) -> dict[str, float]:
    """FairGen's code's sampler weights (``classify_reweight_*.py``): per validation group g,
    w_g = 1 / (acc_g% + 1e-6) with acc_g in percent, normalised to sum 1 over the groups.
    A sample of group g is then drawn with probability proportional to w_g."""
    correct = val_pred == val.labels
    raw = {str(g): 1.0 / (100.0 * float(np.mean(correct[val.groups == g])) + REWEIGHT_EPS)
           for g in np.unique(val.groups)}
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


def train_classifier(
    *,
    train: ArrayData,
    val: ArrayData,
    n_classes: int,
    backbone: str,
    config: DownstreamConfig,
    seed: int,
    work_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainedClassifier:
    """Train one classifier on ``train``, selecting the epoch with the best ``val`` accuracy.

    Seeded and deterministic on a CPU: the weights are initialised under ``seed`` and epoch
    e shuffles with ``seed + e``. With ``work_dir``, a checkpoint (``checkpoint.pt``) is
    written atomically after each epoch under a key of everything the result depends on, and
    a later call with the same inputs resumes after the last finished epoch (and gives the
    same weights as an uninterrupted run). ``on_epoch_end(epoch)`` is called after each
    epoch's checkpoint is written.
    """
    with torch_threads(config.cpu_threads):
        return _train(train=train, val=val, n_classes=n_classes, backbone=backbone,
                      config=config, seed=seed, work_dir=work_dir, device=device,
                      progress=progress, on_epoch_end=on_epoch_end)


def _train(*, train: ArrayData, val: ArrayData, n_classes: int, backbone: str,
           config: DownstreamConfig, seed: int, work_dir: str | Path | None, device: str,
           progress: bool, on_epoch_end: Callable[[int], None] | None) -> TrainedClassifier:
    if len(train) == 0:
        raise ValueError("no training images")
    if len(val) == 0:
        raise ValueError("no validation images: the early stopping needs the val split")
    dev = torch.device(device)
    size = int(train.images.shape[-1])
    in_chans = int(train.images.shape[1])
    key_blob = json.dumps({
        "code": CLASSIFIER_CODE_VERSION, "backbone": backbone, "config": config.as_dict(),
        "seed": seed, "n_classes": n_classes, "train": train.digest(), "val": val.digest(),
        "device_type": dev.type, "torch": torch.__version__,
    }, sort_keys=True)
    key = hashlib.sha256(key_blob.encode()).hexdigest()

    torch.manual_seed(seed)
    model = build_backbone(backbone, n_classes=n_classes, in_chans=in_chans, image_size=size,
                           pretrained=config.pretrained).to(dev)
    norm = _normalizer(model, in_chans)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state: dict[str, Any] = {"epoch": 0, "best_val": -1.0, "best_epoch": -1, "best_state": None,
                             "bad_epochs": 0, "weights": None, "history": []}
    ckpt = Path(work_dir) / "checkpoint.pt" if work_dir is not None else None
    saved: Any = None
    if ckpt is not None and ckpt.is_file():
        try:
            saved = torch.load(ckpt, map_location=dev, weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError) as err:  # a damaged checkpoint
            log.warning("%s: training afresh, checkpoint %s is unreadable (%s)", backbone, ckpt,
                        " ".join(str(err).split())[:120])
    if saved is not None:
        if saved.get("key") == key:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            state = saved["state"]
            log.info("%s: resuming after epoch %d from %s", backbone, state["epoch"], ckpt)
        else:
            log.info("%s: ignoring checkpoint %s made for other inputs", backbone, ckpt)

    n = len(train)
    labels_t = torch.from_numpy(train.labels.astype(np.int64))
    train_groups = train.groups.astype(str)
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.patience:
        epoch = state["epoch"]
        model.train()
        w = state["weights"]
        by_sampler = config.reweight and config.reweight_mode == "sampler"
        gen = torch.Generator().manual_seed(seed + epoch)
        if by_sampler:  # FairGen's code: weights choose the images, every loss weighs 1
            fill = float(np.mean(list(w.values()))) if w else 1.0
            draw = torch.tensor([w.get(g, fill) for g in train_groups] if w else [1.0] * n,
                                dtype=torch.float64)
            order = torch.multinomial(draw, n, replacement=True, generator=gen)
            sample_w = torch.ones(n)
        else:
            sample_w = (torch.tensor([w[g] for g in train_groups], dtype=torch.float32)
                        if w is not None else torch.ones(n))
            order = torch.randperm(n, generator=gen)
        total = 0.0
        bar = tqdm(range(0, n, config.batch_size), desc=f"{backbone} epoch {epoch + 1}",
                   disable=not progress, leave=False, unit="batch")
        for s in bar:
            idx = order[s:s + config.batch_size]
            x = _batch(train.images[idx.numpy()], norm, dev)
            loss_each = F.cross_entropy(model(x), labels_t[idx].to(dev), reduction="none")
            loss = (loss_each * sample_w[idx].to(dev)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        val_pred = predict_proba(model, val.images, norm=norm, device=dev,
                                 batch_size=config.batch_size * 4).argmax(1)
        val_acc = float(np.mean(val_pred == val.labels))
        state["history"].append({"epoch": epoch + 1, "train_loss": total / n,
                                 "val_accuracy": val_acc})
        if val_acc > state["best_val"]:
            state.update(best_val=val_acc, best_epoch=epoch + 1, bad_epochs=0,
                         best_state={k: v.detach().clone() for k, v in
                                     model.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        if config.reweight and config.reweight_mode == "sampler":
            state["weights"] = sampler_group_weights(val_pred, val)
        elif config.reweight:
            state["weights"] = group_weights(val_pred, val, train.groups)
        state["epoch"] = epoch + 1
        log.info("%s epoch %d: train loss %.4f, val accuracy %.4f", backbone, epoch + 1,
                 total / n, val_acc)
        if ckpt is not None:
            _save_atomic({"key": key, "model": model.state_dict(),
                          "optimizer": opt.state_dict(), "state": state}, ckpt)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    model.load_state_dict(state["best_state"])
    model.eval()
    return TrainedClassifier(model, norm, dev, state["best_epoch"], state["best_val"],
                             state["epoch"], state["history"], config.batch_size * 4,
                             config.cpu_threads)
