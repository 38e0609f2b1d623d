"""Model selection of ``vidfx train translate``: the evaluation's measures on the held-out
``select`` frames of CamVid *train* (never val or test).

``day2dusk``: the 51 select day frames are translated as stills (480x360, the node's path:
:class:`~vidfx.translate.pipeline.TranslatePipeline`); ``fd`` is the Fréchet distance of their
tiles to the select dusk frames' tiles, ``miou`` the segment network's mIoU on them against
their labels (:mod:`vidfx.translate.evaluate`). ``edges``: ``l1``, the mean absolute error of
frames made from the edge maps of held-out pictures.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch

from ..ops.features import frechet_distance
from .data import domain_files, read_frames
from .evaluate import read_label, segment_miou, spaced, tile_features
from .model import TranslateNet
from .pipeline import TranslatePipeline, TranslateSettings

SELECT_DAY = None  # select day frames scored (None: all 51; all 11 select dusk frames are the reference)


@cache
def _select_frames(data: Path) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    day_files = spaced(domain_files(data, "day", "select"), SELECT_DAY)
    labels = [read_label(data / "camvid" / "trainannot" / f"{f.stem}.png") for f in day_files]
    return read_frames(day_files), labels, read_frames(domain_files(data, "dusk", "select"))


def translate_stills(net: TranslateNet, frames: np.ndarray, model: str, device: torch.device) -> np.ndarray:
    """Each frame translated on its own by the node's pipeline around ``net``.

    Shape: float32 :math:`(N, H, W, 3)` -> same.
    """
    pipeline = TranslatePipeline(TranslateSettings(model=model, temporal=0.0), device, net=net)
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        pipeline.reset()
        out[i] = pipeline.run(frame[None])[0]
    return out


@torch.no_grad()
def select_score(
    net: TranslateNet | None, task: str, data: Path, device: torch.device, pictures: list[np.ndarray] | None = None
) -> dict[str, float]:
    """The selection scores of ``net`` (None: the untranslated frames); ``pictures``: the held-out
    pictures of the ``edges`` task (float32 (H, W, 3))."""
    if task == "edges":
        if net is None or not pictures:
            return {"l1": float("inf")}
        errors = [float(np.abs(translate_stills(net, p[None], "edges2frame", device)[0] - p).mean()) for p in pictures]
        return {"l1": round(float(np.mean(errors)), 5)}
    day, labels, dusk = _select_frames(Path(data))
    out = day if net is None else translate_stills(net, day, "day2dusk", device)
    fd = frechet_distance(tile_features(out), tile_features(dusk))
    return {"fd": round(fd, 4), "miou": round(segment_miou(out, labels), 2)}
