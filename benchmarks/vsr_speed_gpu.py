"""GPU speed of the vsr node (shipped tiny x4): 480x270 -> 1920x1080 through the engine, for
fp16/fp32 and whole-frame/tiled processing; prints one line per setting.

    python benchmarks/vsr_speed_gpu.py      # needs CUDA; run from the repository root
"""

import time

import cv2
import torch

import vidfx
from vidfx.ops.flow import DISFlow

cap = cv2.VideoCapture("sample_media/motion_320x180.mp4")
frames = []
while len(frames) < 40:
    ok, bgr = cap.read()
    if not ok:
        break
    frames.append(cv2.resize(bgr[..., ::-1], (480, 270), interpolation=cv2.INTER_CUBIC))
frames = (frames * 3)[:40]
print(torch.cuda.get_device_name(0), torch.__version__, flush=True)
for precision in ("fp16", "fp32"):
    for tile in (0, 320):
        vidfx.apply("vsr", frames[:4], device="cuda", precision=precision, tile=tile, chunk=4, overlap=0)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = vidfx.apply("vsr", frames, device="cuda", precision=precision, tile=tile)
        dt = time.perf_counter() - t
        assert len(out) == 40 and out[0].shape == (3, 1080, 1920)
        print(
            f"vsr tiny x4 cuda {precision} tile {tile}: {dt / 40:.4f} s/frame over 40 frames "
            f"(engine, chunk 20/4, DIS flow on CPU), peak GPU mem {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB",
            flush=True,
        )
# flow alone, for the share of the time
f = DISFlow()
t = time.perf_counter()
f.clip(frames[:20])
print(f"DIS flow 480x270: {(time.perf_counter() - t) / 20:.4f} s/frame (both directions)")
