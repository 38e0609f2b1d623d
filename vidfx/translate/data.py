"""Data of the day -> dusk translation: which CamVid frames are day, which are dusk, and what each is for.

CamVid's sequences were filmed at two times of day: ``0001TP`` at dusk, ``0006R0`` and ``0016E5``
in daylight (``Seq05VD``, only in test, is daylight too). The splits used here:

- training (:func:`domain_files`, ``part="train"``) and model selection (``part="select"``): CamVid
  **train** only, per domain; every ``SELECT_EVERY``-th frame of each sequence (sorted by name,
  starting with the first) is held out for selection, the rest is for training. Train has
  0006R0 101 + 0016E5 204 day frames and 62 dusk frames of 0001TP.
- evaluation, day input (:func:`eval_day_files`): CamVid **val** (101 frames of 0016E5, daylight),
  with their labels, so that the segmentation of a translated frame can be scored.
- evaluation, real dusk reference (:func:`reference_dusk_files`): the 62 0001TP frames of CamVid
  **test**. They are the only dusk footage outside the training frames, so the Fréchet distance
  to "real dusk" has to use them; CamVid test is evaluation-only, and nothing here lets training
  or model selection read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..fill.data import DATA, read_rgb

__all__ = [
    "DATA",
    "DAY_SEQUENCES",
    "DOMAINS",
    "DUSK_SEQUENCE",
    "PARTS",
    "SELECT_EVERY",
    "domain_files",
    "eval_day_files",
    "read_frames",
    "read_rgb",
    "reference_dusk_files",
    "sequence_of",
]

DAY_SEQUENCES = ("0006R0", "0016E5")
DUSK_SEQUENCE = "0001TP"
DOMAINS = ("day", "dusk")
PARTS = ("train", "select")
SELECT_EVERY = 6  # every 6th frame of a training sequence is for model selection


def sequence_of(path: str | Path) -> str:
    """The CamVid sequence of a frame file (``0016E5_07965.jpg`` -> ``0016E5``)."""
    return Path(path).stem.rsplit("_", 1)[0]


def _frames(folder: Path, sequences: Sequence[str], each: bool = True) -> dict[str, list[Path]]:
    """The ``.jpg`` frames of ``sequences`` in a CamVid split folder, sorted by name, per sequence.
    A missing folder, or a sequence without frames (``each``; else: no frames at all), is a
    ``FileNotFoundError`` naming the folder."""
    if not folder.is_dir():
        raise FileNotFoundError(f"CamVid folder not found: {folder}")
    found: dict[str, list[Path]] = {s: [] for s in sequences}
    for path in sorted(folder.glob("*.jpg")):
        seq = sequence_of(path)
        if seq in found:
            found[seq].append(path)
    missing = [seq for seq, paths in found.items() if not paths]
    if missing and (each or len(missing) == len(found)):
        raise FileNotFoundError(f"no frames of CamVid sequence {', '.join(missing)} in {folder}")
    return found


def domain_files(data: Path, domain: str, part: str) -> list[Path]:
    """Training (``part="train"``) or model-selection (``part="select"``) frames of a domain
    (``day``: ``DAY_SEQUENCES``, ``dusk``: ``DUSK_SEQUENCE``), from CamVid train only.

    Frame i of each sequence (sorted by name, i from 0) is ``select`` when i % ``SELECT_EVERY`` == 0,
    ``train`` otherwise: the two parts are disjoint and together are all of the domain's train frames.
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; valid: {', '.join(DOMAINS)}")
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; valid: {', '.join(PARTS)}")
    sequences = DAY_SEQUENCES if domain == "day" else (DUSK_SEQUENCE,)
    out: list[Path] = []
    for paths in _frames(Path(data) / "camvid" / "train", sequences).values():
        out += [p for i, p in enumerate(paths) if (i % SELECT_EVERY == 0) == (part == "select")]
    return out


def eval_day_files(data: Path) -> list[tuple[Path, Path]]:
    """The daylight input of the evaluation: CamVid val frames (all of sequence 0016E5), sorted
    by name, each with its label file (``valannot/<name>.png``, classes 0..10, 11 = void)."""
    root = Path(data) / "camvid"
    frames = sorted(p for paths in _frames(root / "val", DAY_SEQUENCES, each=False).values() for p in paths)
    pairs = [(p, root / "valannot" / f"{p.stem}.png") for p in frames]
    for _, label in pairs:
        if not label.is_file():
            raise FileNotFoundError(f"CamVid label missing: {label}")
    return pairs


def reference_dusk_files(data: Path) -> list[Path]:
    """The real-dusk reference of the evaluation's Fréchet distance: the ``DUSK_SEQUENCE`` frames
    of CamVid **test**, sorted by name. Evaluation only (see the module docstring): never train on
    them or use them to choose a model."""
    return _frames(Path(data) / "camvid" / "test", (DUSK_SEQUENCE,))[DUSK_SEQUENCE]


def read_frames(paths: Sequence[Path]) -> np.ndarray:
    """Picture files (:func:`read_rgb`, long side at most 640) as one float array. All must have
    the same size (CamVid frames are 480x360).

    Shape:
        - output: float32 :math:`(N, H, W, 3)`, RGB 0..1
    """
    if not paths:
        return np.zeros((0, 0, 0, 3), np.float32)
    return np.stack([read_rgb(Path(p)) for p in paths]).astype(np.float32) / 255.0
