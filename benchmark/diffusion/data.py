"""Training data of a diffusion model: encoded images, classes (= prompts) and groups.

The text encoder and the codec are frozen, so a training set is encoded once: every image to
its latent distribution (mean, std; std is None for the exact pixel codec) and every
distinct prompt to its text-encoder hidden states. A *class* is a prompt, i.e. a subgroup x
finding cell (FairGen's definition); ``class_ids`` index :attr:`TrainData.prompts`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..tasks import Task
from .backbone import Backbone, encode_prompts
from .prompts import build_prompt

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    """An encoded training set (all tensors on the CPU; row i is training example i).

    Attributes:
        latents: (N, C, h, w) latent means (pixel codec: the exact rearranged pixels).
        latent_std: (N, C, h, w) latent standard deviations, or None when deterministic.
        class_ids: (N,) long, index into ``prompts``.
        prompts: the distinct prompts (classes), sorted.
        class_embeddings: (n_classes, L, D) frozen text-encoder states of ``prompts``.
        uncond_embedding: (1, L, D) states of the empty prompt (classifier-free guidance).
        group_ids: per sensitive attribute, (N,) long index into ``group_names[attr]``.
        group_names: per sensitive attribute, the task grouper's labels in index order
            (:data:`benchmark.grouping.UNKNOWN` for an unknown value).
        finding_ids: (N,) long index into ``findings``.
        findings: the task's classes (findings), in task order.
        controls: (N, Cc, R, R) uint8 control images of the examples (a ControlNet's input,
            seen as ``value / 255``), or None when the data has none.
    """

    latents: torch.Tensor
    latent_std: torch.Tensor | None
    class_ids: torch.Tensor
    prompts: list[str]
    class_embeddings: torch.Tensor
    uncond_embedding: torch.Tensor
    group_ids: dict[str, torch.Tensor]
    group_names: dict[str, list[str]]
    finding_ids: torch.Tensor
    findings: list[str]
    controls: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.prompts)

    def class_counts(self) -> np.ndarray:
        """Number of training examples of each class (prompt)."""
        return np.bincount(self.class_ids.numpy(), minlength=self.n_classes)

    def fingerprint(self) -> dict:
        """A small summary that changes when the data does (checked on resume)."""
        out = {"n": len(self), "shape": list(self.latents.shape), "prompts": self.prompts,
               "latent_sum": round(float(self.latents.double().sum()), 4),
               "class_ids_sum": int(self.class_ids.sum())}
        if self.controls is not None:
            out["controls"] = hashlib.sha256(self.controls.numpy().tobytes()).hexdigest()[:16]
        return out


def image_to_tensor(img: Image.Image, *, channels: int, resolution: int) -> torch.Tensor:
    """A PIL image as a (C, R, R) float tensor in [-1, 1] (bicubic resize, channel convert)."""
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def control_to_tensor(img: Image.Image | np.ndarray, *, channels: int, resolution: int
                      ) -> torch.Tensor:
    """A control image (mask, sketch) as a (C, R, R) uint8 tensor: converted to ``channels``
    (1: ``L``, 3: ``RGB``) and resized with nearest-neighbour interpolation (so label masks
    keep their labels). A ControlNet sees ``value / 255``. A uint8 array may be (R, R),
    (R, R, C) or (C, R, R)."""
    if isinstance(img, np.ndarray):
        arr = img
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(1, 2, 0)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            raise ValueError(f"a control image array must be uint8 (R, R[, C]), got "
                             f"{arr.dtype} {arr.shape}")
        img = Image.fromarray(arr)
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.NEAREST)
    arr = np.array(img, dtype=np.uint8)  # a writable copy
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def tensor_to_image(x: torch.Tensor, *, channels: int, size: int) -> Image.Image:
    """Inverse of :func:`image_to_tensor`: a (C', R, R) tensor in [-1, 1] to a PIL image of
    ``channels`` channels and side ``size`` (RGB model outputs become grayscale by luma)."""
    arr = ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
    img = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return img


@torch.no_grad()
def encode_images(backbone: Backbone, images: Sequence[Image.Image], *, batch_size: int = 64,
                  device: str | torch.device = "cpu", progress: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Latent (mean, std) of every image with the backbone's frozen codec."""
    codec = backbone.codec.to(device)
    means, stds = [], []
    for i in tqdm(range(0, len(images), batch_size), desc="encoding images", leave=False,
                  disable=not progress):
        x = torch.stack([image_to_tensor(im, channels=backbone.image_channels,
                                         resolution=backbone.spec.resolution)
                         for im in images[i:i + batch_size]]).to(device)
        m, s = codec.encode(x)
        means.append(m.float().cpu())
        if s is not None:
            stds.append(s.float().cpu())
    mean = torch.cat(means)
    return mean, (torch.cat(stds) if stds else None)


def build_train_data(backbone: Backbone, train: datasets.Dataset, task: Task, *,
                     prompt_style: str = "fairgen", device: str | torch.device = "cpu",
                     progress: bool = True, control_column: str | None = None,
                     control_channels: int | None = None,
                     prompts: Sequence[str] | None = None) -> TrainData:
    """Encode ``train`` for :class:`benchmark.diffusion.DiffusionTrainer`.

    ``control_column`` names an image column of per-example control images (e.g. ``mask``)
    for a ControlNet (:func:`control_to_tensor`; ``control_channels`` defaults to the
    backbone's ControlNet's). Rows whose finding is outside the task, or without a control
    image, are an error (the runner filters them first). ``prompts`` gives every row's prompt
    explicitly (a method's own template, e.g. the cardiac metadata text); default: the
    ``prompt_style`` prompt of the row's cell."""
    keys = task.cell_keys(train)
    outside = sum(cls is None for _, cls in keys)
    if outside:
        raise ValueError(f"training set holds {outside} rows whose finding is not a class of "
                         f"task {task.name!r}")
    if len(keys) == 0:
        raise ValueError("the training set is empty")
    attrs = task.sensitive_attributes
    if prompts is not None:
        if len(prompts) != len(keys) or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompts: expected one string per training row ({len(keys)}), "
                             f"got {len(prompts)}")
        row_prompts = list(prompts)
    else:
        row_prompts = [build_prompt(task, dict(zip(attrs, g, strict=True)), c,
                                    style=prompt_style) for g, c in keys]
    prompts = sorted(set(row_prompts))
    index = {p: i for i, p in enumerate(prompts)}
    group_names: dict[str, list[str]] = {}
    group_ids: dict[str, torch.Tensor] = {}
    labels = task.grouper.labels(train, what="diffusion training set").by_grouping
    for attr in attrs:
        values = labels[attr]
        names = sorted(set(values))
        group_names[attr] = names
        group_ids[attr] = torch.tensor([names.index(v) for v in values], dtype=torch.long)
    findings = list(task.classes)
    controls = None
    if control_column is not None:
        controls = _controls(backbone, train, control_column, control_channels)
    mean, std = encode_images(backbone, train["image"], device=device, progress=progress)
    backbone.text_encoder.to(device)
    emb = encode_prompts(backbone, [*prompts, ""])
    log.info("diffusion data: %d images, %d classes (prompts), latents %s", len(keys),
             len(prompts), tuple(mean.shape[1:]))
    return TrainData(
        latents=mean,
        latent_std=std,
        class_ids=torch.tensor([index[p] for p in row_prompts], dtype=torch.long),
        prompts=prompts,
        class_embeddings=emb[:-1],
        uncond_embedding=emb[-1:],
        group_ids=group_ids,
        group_names=group_names,
        finding_ids=torch.tensor([findings.index(c) for _, c in keys], dtype=torch.long),
        findings=findings,
        controls=controls,
    )


def _controls(backbone: Backbone, train: datasets.Dataset, column: str,
              channels: int | None) -> torch.Tensor:
    if channels is None:
        if backbone.controlnet is None:
            raise ValueError("control images need control_channels (or a ControlNet attached "
                             "to the backbone)")
        channels = int(backbone.controlnet.config.conditioning_channels)
    if column not in train.column_names:
        raise ValueError(f"control column {column!r} is not in the training set (columns: "
                         f"{', '.join(train.column_names)})")
    images = train[column]
    missing = sum(im is None for im in images)
    if missing:
        raise ValueError(f"control column {column!r}: {missing} of {len(images)} training rows "
                         "have no control image (expected one per row)")
    return torch.stack([control_to_tensor(im, channels=channels,
                                          resolution=backbone.spec.resolution)
                        for im in images])
