"""The downstream-evaluation settings (one defaults table, read by the profiles, the API and
the CLI) and the registry of classifier backbones.

This module imports nothing heavy: profiles import it at start-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..registry import Registry

#: Training sets of the downstream classifiers (result keys).
TRAIN_SETS: tuple[str, ...] = ("real", "real+synthetic", "synthetic")

#: Classifiers on frozen (InceptionV3 FID) features.
FEATURE_HEADS: tuple[str, ...] = ("knn", "gbdt")


@dataclass(frozen=True)
class BackboneSpec:
    """A timm model and the constructor arguments that size it.

    Attributes:
        name: registry name (used in result keys).
        timm_name: the model name for ``timm.create_model``.
        kwargs: extra constructor arguments (sizes); ``num_classes`` and ``in_chans`` are set
            from the task.
        pretrainable: whether timm publishes ImageNet weights for this exact architecture.
        fixed_input: the model takes its input size as ``img_size`` (ViTs).
        description: one line for listings.
    """

    name: str
    timm_name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    pretrainable: bool = True
    fixed_input: bool = False
    description: str = ""


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    return BACKBONES.register(spec.name, spec)


# A ResNet-10-T with 1/4 of the usual widths (0.3M parameters): the from-scratch classifier of
# the smoke and cpu profiles (about 200 images/s of training at 32 px on 2 CPU cores).
register_backbone(BackboneSpec(
    "tiny-resnet", "resnet10t", {"channels": (16, 32, 64, 128), "stem_width": 8},
    pretrainable=False, description="ResNet-10-T at 1/4 width, from scratch (cpu profiles)"))
register_backbone(BackboneSpec("resnet50", "resnet50", description="ResNet-50"))
register_backbone(BackboneSpec("efficientnet-b0", "efficientnet_b0",
                               description="EfficientNet-B0"))
register_backbone(BackboneSpec("vit-b16", "vit_base_patch16_224", fixed_input=True,
                               description="ViT-B/16"))


@dataclass(frozen=True)
class DownstreamConfig:
    """How the downstream classifiers are trained and scored (one per profile).

    Attributes:
        enabled: run the downstream stage in ``benchmark run``.
        backbones: timm backbones (names in :data:`BACKBONES`), each trained on each set.
        pretrained: start from ImageNet weights found in timm's local cache (never
            downloaded); False trains from scratch.
        image_size: classifier input side in pixels (None: the task's image size).
        epochs: most training epochs.
        batch_size: training and inference batch size.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        patience: stop after this many epochs without a better validation accuracy (the
            best-validation epoch's weights are kept).
        reweight: FairGen's adaptive inverse-performance reweighting: from the second epoch,
            subgroup g's loss weight is proportional to 1 / (val acc_g + 1e-6) of the previous
            epoch, normalised to a mean sample weight of 1.
        reweight_mode: how ``reweight`` acts: ``loss`` (the weights scale each sample's loss,
            as above) or ``sampler`` (FairGen's public code: w_g = 1 / (acc_g% + 1e-6)
            normalised to sum 1 over the groups, used as per-sample *sampler* weights, each
            epoch drawing n training images with replacement; epoch 0 uniform weights).
        feature_heads: classifiers on frozen InceptionV3 FID features: ``knn``, ``gbdt``.
        knn_k: neighbours of the k-NN head.
        synthetic_ratio: synthetic images added per real training image (None: all the run's
            synthetic images).
        cas: also train on synthetic images only (classification accuracy score).
        min_group_size: fewest test samples for a group to enter the fairness summaries.
        saliency_diversity: also score the saliency diversity metric per class with the
            first backbone's real-only classifier (:mod:`benchmark.downstream.sdm`); its
            weights are kept beside its result so later runs reuse it.
        sdm_images_per_class: most generated and most held-out images per class in it.
        cpu_threads: torch CPU threads while training and predicting (None: torch's
            default). The tiny from-scratch models train several times faster on one thread
            than on two (measured on a busy 2-core machine), and a fixed count keeps CPU
            results reproducible.
    """

    enabled: bool = True
    backbones: tuple[str, ...] = ("tiny-resnet",)
    pretrained: bool = False
    image_size: int | None = None
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 2
    reweight: bool = False
    reweight_mode: str = "loss"
    feature_heads: tuple[str, ...] = ()
    knn_k: int = 10
    synthetic_ratio: float | None = None
    cas: bool = True
    min_group_size: int = 10
    saliency_diversity: bool = True
    sdm_images_per_class: int = 200
    cpu_threads: int | None = None

    def __post_init__(self) -> None:
        for name in self.backbones:
            spec = BACKBONES.get(name)  # unknown name: UnknownNameError listing the valid ones
            if self.pretrained and not spec.pretrainable:
                raise ValueError(f"backbone {name!r} has no published pretrained weights; "
                                 "use pretrained=False or another backbone")
        bad = [h for h in self.feature_heads if h not in FEATURE_HEADS]
        if bad:
            raise ValueError(f"unknown feature head(s) {bad}; valid: {', '.join(FEATURE_HEADS)}")
        for name in ("epochs", "batch_size", "patience", "knn_k", "min_group_size",
                     "sdm_images_per_class"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"downstream {name} must be a positive integer, got {v!r}")
        if self.cpu_threads is not None and (not isinstance(self.cpu_threads, int)
                                             or self.cpu_threads < 1):
            raise ValueError(f"downstream cpu_threads must be a positive integer or None, "
                             f"got {self.cpu_threads!r}")
        if self.image_size is not None and (not isinstance(self.image_size, int)
                                            or self.image_size < 8):
            raise ValueError(f"downstream image_size must be an integer >= 8 or None, "
                             f"got {self.image_size!r}")
        if self.synthetic_ratio is not None and not self.synthetic_ratio >= 0:
            raise ValueError(f"downstream synthetic_ratio must be >= 0 or None, "
                             f"got {self.synthetic_ratio!r}")
        if self.reweight_mode not in ("loss", "sampler"):
            raise ValueError(f"downstream reweight_mode must be loss or sampler, got "
                             f"{self.reweight_mode!r}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise ValueError("downstream lr must be > 0 and weight_decay >= 0")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DownstreamConfig:
        """Inverse of :meth:`as_dict`; an unknown key is an error."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown downstream option(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(cls.__dataclass_fields__)}")
        d = dict(d)
        for k in ("backbones", "feature_heads"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)
