import os

import datasets
import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from benchmark.schema import FEATURES, derive_attributes, fill_optional  # noqa: E402

datasets.disable_progress_bars()


def make_rows(n: int, seed: int = 0, size: int = 16) -> dict:
    """A small standard-schema table with random images, for tests that need no phantom."""
    rng = np.random.default_rng(seed)
    findings = ["no_finding", "cardiomegaly", "edema"]
    rows: dict[str, list] = {k: [] for k in FEATURES}
    for i in range(n):
        age = float(rng.integers(20, 95))
        finding = findings[i % 3]
        rows["sample_id"].append(f"s{i:04d}")
        rows["patient_id"].append(f"p{i // 2:04d}")
        rows["split"].append("train")
        rows["image"].append(Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)))
        rows["finding"].append(finding)
        rows["labels"].append([finding])
        rows["sex"].append("female" if i % 4 == 0 else "male")
        rows["age"].append(age)
        rows["race"].append(None)
        rows["skin_tone"].append(None)
        rows["bmi"].append(None)
        rows["mask"].append(None)
        for column, value in derive_attributes({"age": age}).items():
            rows[column].append(value)
        rows["source"].append("test")
    return fill_optional(rows)


@pytest.fixture
def tiny_dataset() -> datasets.Dataset:
    return datasets.Dataset.from_dict(make_rows(24), features=FEATURES)


def isolated_cache_dir(tmp_path_factory) -> str:
    """The tests' cache folder (``$FAIRSYNTH_TEST_CACHE`` or one per test session)."""
    return os.environ.get("FAIRSYNTH_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's caches out of the user's home (phantoms, features, downstream).

    Module- and session-scoped fixtures are set up before this one: they must set
    ``FAIRSYNTH_CACHE`` to :func:`isolated_cache_dir` themselves."""
    monkeypatch.setenv("FAIRSYNTH_CACHE", isolated_cache_dir(tmp_path_factory))


@pytest.fixture(scope="session")
def smoke_skin_oracle(tmp_path_factory):
    """The smoke skin oracle (benchmark.oracle.SMOKE_CONFIG), trained once a session (cached
    across sessions under $FAIRSYNTH_TEST_CACHE/oracles when that is set)."""
    from pathlib import Path

    from benchmark.oracle import SMOKE_CONFIG, get_oracle

    shared = os.environ.get("FAIRSYNTH_TEST_CACHE")
    root = Path(shared) / "oracles" if shared else tmp_path_factory.getbasetemp() / "oracles"
    return get_oracle("phantom-skin", SMOKE_CONFIG, cache_dir=root, progress=False)
