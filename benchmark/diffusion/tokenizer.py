"""The real CLIP BPE tokenizer, built offline from the vocabulary that ships in open-clip-torch.

Why not ``CLIPTokenizer.from_pretrained("openai/clip-vit-large-patch14")``: offline it does
not fail, it silently returns a tokenizer whose vocabulary has 2 entries and maps every word
to one id (see OFFLINE.md). So this module rebuilds the 49,408-token vocabulary from
``open_clip``'s bundled ``bpe_simple_vocab_16e6.txt.gz`` (the construction of CLIP's
``SimpleTokenizer``: the 256 byte symbols, the same with ``</w>``, the 48,894 merges joined,
then ``<|startoftext|>`` and ``<|endoftext|>``), writes ``vocab.json`` and ``merges.txt`` and
loads them with :class:`transformers.CLIPTokenizer`. Token ids equal ``open_clip.tokenize``'s up to
and including ``<|endoftext|>``; the padding after it is ``<|endoftext|>`` as in Stable
Diffusion v1's tokenizer (open_clip pads with id 0).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path

CLIP_VOCAB_SIZE = 49408
_N_MERGES = 49152 - 256 - 2  # lines 1..48,894 of the bpe file


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable unicode map (GPT-2's construction)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _cache_dir() -> Path:
    root = os.environ.get("FAIRSYNTH_CACHE", "~/.cache/fairsynth-bench")
    return Path(root).expanduser() / "clip-tokenizer"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def clip_vocab_files(directory: str | Path | None = None) -> tuple[Path, Path]:
    """Write (once) and return ``vocab.json`` and ``merges.txt`` of the CLIP BPE tokenizer."""
    try:
        from open_clip.tokenizer import default_bpe
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("the CLIP tokenizer needs open-clip-torch (pip install "
                          "open-clip-torch): its bundled BPE vocabulary is used") from e
    directory = Path(directory) if directory is not None else _cache_dir()
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    if vocab_path.is_file() and merges_path.is_file():
        return vocab_path, merges_path
    directory.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1:_N_MERGES + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"{default_bpe()}: built a vocabulary of {len(vocab)} tokens, "
                           f"expected {CLIP_VOCAB_SIZE}")
    _write_atomic(vocab_path, json.dumps({t: i for i, t in enumerate(vocab)}))
    # the Hugging Face merges.txt layout: a "#version" header line, then one merge per line
    _write_atomic(merges_path, "\n".join(["#version: 0.2", *merges]) + "\n")
    return vocab_path, merges_path


def build_clip_tokenizer(model_max_length: int = 77):
    """The real CLIP BPE tokenizer (a :class:`transformers.CLIPTokenizer`), built offline."""
    from transformers import CLIPTokenizer

    vocab, _ = clip_vocab_files()
    # a local directory: from_pretrained never reaches the hub for it
    tok = CLIPTokenizer.from_pretrained(str(vocab.parent), model_max_length=model_max_length,
                                        local_files_only=True)
    check_tokenizer(tok)
    return tok


def check_tokenizer(tok) -> None:
    """Refuse the offline trap: a CLIP tokenizer whose vocabulary is not CLIP's 49,408 tokens."""
    if len(tok) != CLIP_VOCAB_SIZE:
        raise RuntimeError(
            f"CLIP tokenizer has a vocabulary of {len(tok)} tokens, expected {CLIP_VOCAB_SIZE} "
            "(an offline from_pretrained(<hub id>) returns such a broken tokenizer; pass a local "
            "directory that holds vocab.json and merges.txt)"
        )
