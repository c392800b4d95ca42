"""``real-only``: the no-augmentation baseline. It generates nothing; downstream models see
only the real training data, and generation metrics are reported as not applicable."""

from __future__ import annotations

import logging

import datasets

from benchmark import FitContext, Generator, Plan, empty_dataset

log = logging.getLogger(__name__)


class RealOnly(Generator):
    name = "real-only"
    description = "no synthetic images: the real training data alone (lower reference)"
    default_config = {}

    def fit(self, train: datasets.Dataset, ctx: FitContext) -> None:
        log.info("real-only: nothing to train")

    def sample(self, plan: Plan) -> datasets.Dataset:
        if plan.total:
            log.info("real-only: generates no images (the plan asked for %d)", plan.total)
        return empty_dataset()
