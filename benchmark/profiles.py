"""Run profiles: one defaults table that both the Python API and the CLI read.

A profile changes sizes and steps, never the code path. Measured on 2 CPU cores, InceptionV3
at 299 px scores only a few images per second, so each profile fixes how many real and
synthetic images FID scores; the result records those counts beside every FID.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .downstream.config import DownstreamConfig
from .registry import Registry


@dataclass(frozen=True)
class Profile:
    """Sizes for one kind of run.

    Attributes:
        name: profile name.
        description: one line for ``benchmark --help`` listings.
        phantom_images: number of images a phantom dataset generates (real datasets ignore it).
        eval_real: most real test images scored by the generation metrics.
        eval_synthetic: most synthetic images scored by the generation metrics.
        feature_batch_size: batch size of the feature extractor.
        synthetic_ratio: synthetic budget as a fraction of the training-set size.
        bootstrap_resamples: bootstrap replicates behind every generation metric's confidence
            interval (0: no intervals).
        diversity_pairs: most image pairs per class for the mean pairwise diversity.
        downstream: the downstream classifiers' settings (see
            :class:`~benchmark.downstream.DownstreamConfig`, whose defaults are the table).
    """

    name: str
    description: str
    phantom_images: int
    eval_real: int
    eval_synthetic: int
    feature_batch_size: int = 24  # fastest measured on 2 CPU cores (16-24 > 32 > 64)
    synthetic_ratio: float = 0.5
    bootstrap_resamples: int = 100
    diversity_pairs: int = 500
    downstream: DownstreamConfig = field(default_factory=DownstreamConfig)

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES: Registry[Profile] = Registry("profile")

for _p in (
    Profile(
        name="smoke",
        description="seconds; for tests and a first look (tiny data, a few dozen images scored)",
        phantom_images=240,
        eval_real=24,
        eval_synthetic=24,
        bootstrap_resamples=20,
        diversity_pairs=50,
        downstream=DownstreamConfig(image_size=32, epochs=1, batch_size=32, min_group_size=2,
                                    sdm_images_per_class=8, cpu_threads=1),
    ),
    Profile(
        name="cpu",
        description="the default: minutes on a 2-core laptop CPU on the phantom",
        phantom_images=3000,
        eval_real=400,
        eval_synthetic=400,
        # 32 px keeps the three classifiers of a run at about a minute on 2 cores; 40 images
        # a class keep the saliency diversity metric's Inception pass (synthetic images the
        # generation metrics did not score, and the val split once) under a minute
        downstream=DownstreamConfig(image_size=32, epochs=5, batch_size=64,
                                    sdm_images_per_class=40, cpu_threads=1),
    ),
    Profile(
        name="gpu",
        description="larger from-scratch models and evaluation sets; needs a GPU",
        phantom_images=20000,
        eval_real=5000,
        eval_synthetic=5000,
        feature_batch_size=128,
        downstream=DownstreamConfig(backbones=("resnet50", "efficientnet-b0"), epochs=30,
                                    patience=5, batch_size=128, lr=1e-3,
                                    feature_heads=("knn", "gbdt")),
    ),
    Profile(
        name="paper",
        description="pretrained Stable Diffusion at the papers' settings; needs weights and a GPU",
        phantom_images=20000,
        eval_real=10000,
        eval_synthetic=10000,
        feature_batch_size=128,
        downstream=DownstreamConfig(backbones=("resnet50", "efficientnet-b0", "vit-b16"),
                                    pretrained=True, image_size=224, epochs=30, patience=5,
                                    batch_size=64, lr=1e-4, weight_decay=0.05,
                                    feature_heads=("knn", "gbdt")),
    ),
):
    PROFILES.register(_p.name, _p)

DEFAULT_PROFILE = "cpu"
