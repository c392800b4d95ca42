"""Fitzpatrick17k: clinical dermatology photographs with Fitzpatrick skin types.

Source: Groh et al., "Evaluating Deep Neural Networks Trained on Clinical Images in
Dermatology with the Fitzpatrick 17k Dataset", CVPR Workshops 2021
(https://github.com/mattgroh/fitzpatrick17k). Licence of the annotation csv: CC BY-NC-SA 3.0;
the images are linked by URL from dermatology atlases and keep their owners' rights (users
download them). Layout, encodings, our mapping and known traps: ``data_cards/fitzpatrick17k.md``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import datasets

from ..registry import DatasetSpec, register_dataset
from ._common import (
    DataLayoutError,
    DropCounter,
    cell,
    check_header,
    check_images,
    find_named,
    hash_splits,
    new_rows,
    read_table,
    require_root,
    to_dataset,
)

log = logging.getLogger("benchmark.data.real")

NAME = "fitzpatrick17k"
CARD = "fitzpatrick17k.md"
CSV_NAMES = ("fitzpatrick17k.csv", "fitzpatrick17k_labels.csv")

#: The current header, and the older one (a leading unnamed index column and ``fitzpatrick``
#: instead of ``fitzpatrick_scale``, no ``fitzpatrick_centaur``).
HEADER = ("md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label",
          "nine_partition_label", "three_partition_label", "qc", "url", "url_alphanum")
OLD_HEADER = ("md5hash", "fitzpatrick", "label", "nine_partition_label",
              "three_partition_label", "qc", "url", "url_alphanum")

#: Fitzpatrick17k condition label -> schema finding (FairGen's five diseases). Other
#: conditions (109 more) are not schema findings: their rows are dropped and counted.
CONDITIONS: dict[str, str] = {
    "allergic contact dermatitis": "allergic_contact_dermatitis",
    "basal cell carcinoma": "basal_cell_carcinoma",
    "lichen planus": "lichen_planus",
    "psoriasis": "psoriasis",
    "squamous cell carcinoma": "squamous_cell_carcinoma",
}
TONES = {"1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "6": "VI"}
IMAGE_SUFFIXES = ("", ".jpg", ".jpeg", ".png")
#: Image folders tried (below the root, then the root itself); the first with images wins.
IMAGE_DIRS = ("images", "data/finalfitz17k", "finalfitz17k", "fitzpatrick17k", "data", "")
SPLIT_SALT = "fitzpatrick17k"


def _index_images(roots: list[Path]) -> tuple[Path, dict[str, str]]:
    """(image folder, file name -> path) of the first candidate folder that has images."""
    for root, rel in ((r, d) for r in roots for d in IMAGE_DIRS):
        folder = root / rel if rel else root
        if not folder.is_dir():
            continue
        index = {e.name: e.path for e in os.scandir(folder)
                 if e.is_file() and not e.name.endswith((".csv", ".md", ".txt", ".py"))}
        if index:
            return folder, index
    raise FileNotFoundError(f"{NAME}: no images under {roots[0]}; looked in "
                            f"{', '.join(d or '.' for d in IMAGE_DIRS)}")


def load(*, root: str | os.PathLike | None, image_size: int | None = None,
         n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
         tone_column: str = "fitzpatrick_scale", missing_images: str = "drop",
         drop_wrongly_labelled: bool = False, check: str = "exists") -> datasets.Dataset:
    """Load a local Fitzpatrick17k copy (csv + downloaded images) as standard-schema rows.

    Args:
        root: folder holding ``fitzpatrick17k.csv`` (or within 2 levels) and the images.
        image_size, n_images, seed, split_salt: ignored (native images; split by image hash
            with the dataset's fixed salt, see the card).
        tone_column: ``fitzpatrick_scale`` (default; ``fitzpatrick`` in the old csv) or
            ``fitzpatrick_centaur`` (the second annotation, current csv only).
        missing_images: ``drop`` (default: many source URLs are dead, so local copies are
            incomplete; the count is logged) or ``error``.
        drop_wrongly_labelled: drop rows whose ``qc`` is ``3 Wrongly labelled``.
        check: image check at load time (none, exists, decode).
    """
    del image_size, n_images, seed, split_salt
    if missing_images not in ("drop", "error"):
        raise ValueError(f"{NAME}: missing_images={missing_images!r}; expected drop or error")
    base = require_root(root, NAME, CARD)
    csv_path = find_named(base, CSV_NAMES, max_depth=2)
    if csv_path is None:
        raise FileNotFoundError(f"{NAME}: {' or '.join(CSV_NAMES)} not found under {base}")
    df = read_table(csv_path, dataset=NAME, required=("md5hash", "label"))
    if "fitzpatrick_scale" in df.columns:
        check_header(df, csv_path, dataset=NAME, required=HEADER)
    elif "fitzpatrick" in df.columns:
        check_header(df, csv_path, dataset=NAME, required=OLD_HEADER)
        log.info("%s: %s has the older header (fitzpatrick, no fitzpatrick_centaur)", NAME,
                 csv_path.name)
        if tone_column == "fitzpatrick_scale":
            tone_column = "fitzpatrick"
    else:
        check_header(df, csv_path, dataset=NAME, required=HEADER)
    if tone_column not in df.columns:
        raise ValueError(f"{NAME}: tone_column={tone_column!r} is not a column of {csv_path} "
                         f"(found {', '.join(df.columns)})")
    folder, index = _index_images(list(dict.fromkeys([csv_path.parent, base])))
    seen: set[str] = set()
    drops = DropCounter(NAME)
    rows = new_rows()
    missing: list[str] = []
    for i, rec in enumerate(df.to_dict("records")):
        where = f"{csv_path} row {i + 2}"
        md5 = cell(rec["md5hash"])
        if md5 is None:
            raise DataLayoutError(f"{where}: empty md5hash")
        if md5 in seen:
            drops.drop("duplicate md5hash")
            continue
        seen.add(md5)
        label = (cell(rec["label"]) or "").lower().replace("_", " ").replace("-", " ")
        finding = CONDITIONS.get(" ".join(label.split()))
        if finding is None:
            drops.drop("condition is not one of the schema's findings")
            continue
        if drop_wrongly_labelled and (cell(rec["qc"]) or "").startswith("3"):
            drops.drop("qc 3 Wrongly labelled")
            continue
        tone_raw = cell(rec[tone_column])
        if tone_raw is not None and tone_raw.endswith(".0"):
            tone_raw = tone_raw[:-2]
        if tone_raw in (None, "-1"):
            tone = None
            drops.unknown_value(f"skin tone ({tone_column} -1 or blank)")
        elif tone_raw in TONES:
            tone = TONES[tone_raw]
        else:
            raise DataLayoutError(f"{where}: {tone_column} {tone_raw!r}; expected 1-6 or -1")
        names = [md5 + s for s in IMAGE_SUFFIXES]
        alnum = cell(rec["url_alphanum"])
        if alnum:
            names += [alnum + s for s in IMAGE_SUFFIXES]
        path = next((index[n] for n in names if n in index), None)
        if path is None:
            if missing_images == "error":
                raise FileNotFoundError(f"{NAME}: {where}: no image {md5}(.jpg) or "
                                        f"{alnum} in {folder}")
            missing.append(md5)
            drops.drop("image not downloaded")
            continue
        rows["sample_id"].append(md5)
        rows["patient_id"].append(md5)
        rows["image"].append(path)
        rows["finding"].append(finding)
        rows["labels"].append([finding])
        rows["skin_tone"].append(tone)
        rows["source"].append(NAME)
    if missing:
        log.warning("%s: %d rows of the five conditions have no image in %s (first: %s)", NAME,
                    len(missing), folder, missing[0])
    splits = hash_splits(rows["patient_id"], SPLIT_SALT)
    rows["split"] = [splits[p] for p in rows["patient_id"]]
    check_images(rows["image"], check, dataset=NAME, root=base)
    drops.report(len(df), len(rows["sample_id"]))
    return to_dataset(rows, dataset=NAME, root=base)


register_dataset(
    DatasetSpec(
        name=NAME,
        description="Fitzpatrick17k dermatology photos, FairGen's 5 diseases, Fitzpatrick "
        "skin type I-VI (needs --root)",
        loader=load,
        phantom=False,
        card=CARD,
    )
)
