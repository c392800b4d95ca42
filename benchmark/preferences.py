"""Preference pairs and the simulated physician (beside the phantom oracle).

A preference pair says that, for one prompt, image ``image_w`` is preferred to
``image_l``. The file format is FairGen's public code's ``physician_preferences.jsonl``: one
JSON object per line with the keys ``text`` (the prompt), ``image_w`` and ``image_l``
(image paths, absolute or relative to the file's folder). Other keys are kept as ``meta``
(the simulated physician writes its scores there).

On a phantom task a :class:`SimulatedPhysician` stands in for the physicians, whose data is
not public: it reads each candidate image with the phantom :class:`~benchmark.oracle.Oracle`
and scores it

    s(x) = 1[ŷ(x) = y] + 1[ŷ(x) = y and φ̂(x) ∈ Φ(y, a)]        (0, 1 or 2)

for the requested finding y and subgroup a (Φ(y, a): the phenotypes the phantom draws for
finding y in subgroup a, :meth:`Oracle.expected_phenotypes`), i.e. it prefers an image that
shows the requested finding, and more so as it presents in that subgroup. Among the K
candidates of a prompt every pair with s_w > s_l is a preference pair (the largest score
gaps first, at most ``max_pairs`` per prompt); pairs of equal score are ties and dropped
(counted in the summary).

With the tie-break ``confidence`` a pair of equal score is ordered by the oracle's softmax
probability of the requested finding, p(y | x) (the image that looks more like the requested
finding wins; a forced choice); only pairs equal in both are dropped. The score gap still
orders the pairs first, then the probability gap. FairGen uses it at the smoke profile only,
where the base model is noise after a few steps, every candidate reads as the same finding
and the 0/1/2 scores tie everywhere (``ties="drop"``, the default elsewhere, would leave no
pair).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: How a simulated physician treats candidates of equal score (module docstring).
TIE_BREAKS = ("drop", "confidence")
#: The file name we write and look for in a folder.
PREFERENCE_FILE = "preferences.jsonl"
#: The file name of FairGen's public code (also accepted in a folder).
AS_CODED_PREFERENCE_FILE = "physician_preferences.jsonl"
PREFERENCE_KEYS = ("text", "image_w", "image_l")
FORMAT_HELP = ('one JSON object per line: {"text": <prompt>, "image_w": <preferred image '
               'path>, "image_l": <rejected image path>}, paths absolute or relative to the file')


class PreferenceFileError(ValueError):
    """A preference file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class PreferencePair:
    """One pair: for prompt ``text``, ``image_w`` (a path) is preferred to ``image_l``."""

    text: str
    image_w: str
    image_l: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"text": self.text, "image_w": self.image_w, "image_l": self.image_l,
                **dict(self.meta)}


def preference_file(path: str | os.PathLike[str]) -> Path:
    """The preference file at ``path``: the file itself, or in a folder
    :data:`PREFERENCE_FILE` (else :data:`AS_CODED_PREFERENCE_FILE`)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in (PREFERENCE_FILE, AS_CODED_PREFERENCE_FILE):
            if (p / name).is_file():
                return p / name
        raise PreferenceFileError(f"{p} holds no {PREFERENCE_FILE} or "
                                  f"{AS_CODED_PREFERENCE_FILE} ({FORMAT_HELP})")
    if not p.is_file():
        raise PreferenceFileError(f"preference file {p} does not exist ({FORMAT_HELP})")
    return p


def read_preferences(path: str | os.PathLike[str], *, check_images: bool = True
                     ) -> list[PreferencePair]:
    """Read a preference file (:func:`preference_file`); image paths come back absolute.

    Raises:
        PreferenceFileError: naming the file and line of the first bad line (not JSON, not an
            object, a missing or non-string key, an image that does not exist), or an empty
            file. Blank lines are skipped.
    """
    f = preference_file(path)
    pairs: list[PreferencePair] = []
    for no, line in enumerate(f.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{f}:{no}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise PreferenceFileError(f"{where}: not JSON ({err.msg}); expected "
                                      f"{FORMAT_HELP}") from None
        if not isinstance(obj, dict):
            raise PreferenceFileError(f"{where}: expected a JSON object, got "
                                      f"{type(obj).__name__}")
        missing = [k for k in PREFERENCE_KEYS if not isinstance(obj.get(k), str) or not obj[k]]
        if missing:
            raise PreferenceFileError(f"{where}: key(s) {', '.join(missing)} missing or not a "
                                      f"non-empty string; expected {FORMAT_HELP}")
        paths = {}
        for k in ("image_w", "image_l"):
            p = Path(obj[k]) if Path(obj[k]).is_absolute() else f.parent / obj[k]
            if check_images and not p.is_file():
                raise PreferenceFileError(f"{where}: {k} {obj[k]!r} does not exist "
                                          f"(looked for {p})")
            paths[k] = str(p)
        meta = {k: v for k, v in obj.items() if k not in PREFERENCE_KEYS}
        pairs.append(PreferencePair(obj["text"], paths["image_w"], paths["image_l"], meta))
    if not pairs:
        raise PreferenceFileError(f"{f} holds no preference pair ({FORMAT_HELP})")
    return pairs


def write_preferences(pairs: Sequence[PreferencePair], path: str | os.PathLike[str]) -> Path:
    """Write ``pairs`` as jsonl (atomically); image paths under the file's folder are written
    relative to it, so the folder can be moved."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for pair in pairs:
        obj = pair.as_json()
        for k in ("image_w", "image_l"):
            p = Path(obj[k])
            if p.is_absolute() and p.is_relative_to(path.parent.resolve()):
                obj[k] = str(p.relative_to(path.parent.resolve()))
        lines.append(json.dumps(obj, sort_keys=True))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + ("\n" if lines else ""))
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class Judgement:
    """The simulated physician's reading of candidate images (one entry per image)."""

    finding_ok: np.ndarray  # bool: the oracle reads the requested finding
    condition_ok: np.ndarray  # bool: ... and a phenotype of the requested subgroup
    #: float: the oracle's softmax probability of the requested finding, p(y | x)
    finding_proba: np.ndarray | None = None

    @property
    def scores(self) -> np.ndarray:
        return self.finding_ok.astype(int) + self.condition_ok.astype(int)


class SimulatedPhysician:
    """Scores images with a phantom oracle and turns scores into preference pairs (module
    docstring)."""

    def __init__(self, oracle: Any):
        self.oracle = oracle

    def judge(self, images: Sequence[Any], requests: Sequence[Mapping[str, str | None]]
              ) -> Judgement:
        """Read ``images`` (PIL or arrays); ``requests[i]`` holds ``finding`` and the
        requested attribute values of image i."""
        if len(images) != len(requests):
            raise ValueError(f"{len(images)} images but {len(requests)} requests")
        proba = self.oracle.predict_proba(list(images))
        heads = self.oracle.heads
        pred = {k: [heads[k][i] for i in p.argmax(axis=1)] for k, p in proba.items()}
        finding = np.array([p == r["finding"] for p, r in zip(pred["finding"], requests,
                                                              strict=True)], bool)
        expected = [self.oracle.expected_phenotypes(dict(r)) for r in requests]
        pheno = pred.get("phenotype", [None] * len(requests))
        cond = finding & np.array([p in e for p, e in zip(pheno, expected, strict=True)], bool)
        vocab = list(heads["finding"])
        p_req = np.array([proba["finding"][i, vocab.index(r["finding"])]
                          if r["finding"] in vocab else 0.0 for i, r in enumerate(requests)],
                         float)
        return Judgement(finding, cond, p_req)


def pair_by_scores(scores: Sequence[int | float], *, max_pairs: int | None = None,
                   tie_break: Sequence[float] | None = None
                   ) -> tuple[list[tuple[int, int]], int]:
    """Preference pairs (winner, loser) among one prompt's candidates: every (i, j) with
    s_i > s_j, the largest gaps first (then by index), at most ``max_pairs``; returns them and
    the number of tied pairs dropped. With ``tie_break`` (a second score b, e.g. p(y | x)) the
    order is lexicographic in (s, b): a pair with s_i = s_j and b_i > b_j is a pair too, sorted
    after every pair of larger score gap, then by the larger b gap; only pairs equal in both
    are ties."""
    s = np.asarray(scores, dtype=float)
    b = np.zeros_like(s) if tie_break is None else np.asarray(tie_break, dtype=float)
    if b.shape != s.shape:
        raise ValueError(f"tie_break has {b.shape} entries, scores {s.shape}")
    pairs, ties = [], 0
    for i in range(len(s)):
        for j in range(i + 1, len(s)):
            if (s[i], b[i]) == (s[j], b[j]):
                ties += 1
            elif (s[i], b[i]) > (s[j], b[j]):
                pairs.append((i, j))
            else:
                pairs.append((j, i))
    pairs.sort(key=lambda p: (-(s[p[0]] - s[p[1]]), -(b[p[0]] - b[p[1]]), p))
    if max_pairs is not None:
        pairs = pairs[:max_pairs]
    return pairs, ties


def preference_summary(pairs: Sequence[PreferencePair], *, ties: int | None = None
                       ) -> dict[str, Any]:
    """Oracle adherence of the winners and the losers of simulated pairs (their ``meta``
    ``finding_ok_w/l`` and ``condition_ok_w/l``): the finding and condition adherence (share
    of images) of each side."""
    out: dict[str, Any] = {"n_pairs": len(pairs), "n_prompts": len({p.text for p in pairs})}
    if ties is not None:
        out["ties_dropped"] = int(ties)
    for what in ("finding", "condition"):
        for side in ("w", "l"):
            vals = [bool(p.meta[f"{what}_ok_{side}"]) for p in pairs
                    if f"{what}_ok_{side}" in p.meta]
            name = "winners" if side == "w" else "losers"
            out[f"{what}_adherence_{name}"] = float(np.mean(vals)) if vals else None
    return out
