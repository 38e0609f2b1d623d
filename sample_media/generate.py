"""Make the small test clips in this folder (all synthetic, deterministic).

    .venv/bin/python sample_media/generate.py            # writes next to this script
    .venv/bin/python sample_media/generate.py OUT_DIR

Clips:
- ``tone_flash_640x360.mp4``: 640x360, 25 fps, 4 s, H.264 + AAC 48 kHz mono. Every whole second
  the picture flashes white for one frame and a 1 kHz beep sounds for 40 ms, starting on
  the same instant: an A/V sync check.
- ``gradient_10bit_h265.mp4``: 320x180, 24000/1001 fps, 36 frames, H.265 Main10
  (yuv420p10le), bt709 primaries/transfer/matrix, tv range. A slow horizontal ramp with
  1024 levels that 8-bit cannot hold, plus a moving bar.
- ``odd_size_642x362.mp4``: 642x362, 30 fps, 30 frames, H.264 (width not a multiple of 16).
- ``motion_320x180.mp4``: 320x180, 25 fps, 64 frames, H.264 crf 14. Textured discs and a
  square moving over a textured background: smoke tests for VSR / segmentation.
- ``rotated_90.mp4``: 160x96 coded, display matrix 90 degrees (upright 96x160), 10 frames;
  a white block marks the coded top-left corner.
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction

import av
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _video_stream(container, codec: str, fps: Fraction, width: int, height: int, pix_fmt: str, **options):
    stream = container.add_stream(codec, rate=fps, options=options)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    stream.codec_context.thread_count = 1  # deterministic output
    return stream


def _encode(container, stream, frames, fps: Fraction, pix_fmt: str | None = None, src_fmt: str = "rgb24", **reformat):
    for i, array in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(array, format=src_fmt)
        if pix_fmt:
            frame = frame.reformat(format=pix_fmt, **reformat)
        frame.pts = i
        frame.time_base = 1 / fps
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random colour texture (sum of a few sine waves), uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        for _ in range(4):
            fx, fy = rng.uniform(0.02, 0.25, 2)
            phase = rng.uniform(0, 6.28)
            out[..., c] += np.sin(fx * x + fy * y + phase)
    out = (out - out.min()) / (out.max() - out.min())
    return (out * 255).astype(np.uint8)


def sync_clip(path: str) -> None:
    """H.264 + AAC with a white flash and a beep at every whole second."""
    fps, seconds, rate = Fraction(25), 4, 48000
    width, height = 640, 360
    with av.open(path, "w") as container:
        video = _video_stream(container, "libx264", fps, width, height, "yuv420p", crf="23", preset="medium")
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "mono"
        audio.bit_rate = 64000
        base = texture(height, width, 1) // 3
        frames = []
        for i in range(int(fps * seconds)):
            img = base.copy()
            if i % int(fps) == 0:
                img[:] = 255
            x = int(i * 6) % (width - 20)
            img[160:200, x : x + 20] = (220, 40, 40)
            frames.append(img)
        t = np.arange(rate * seconds) / rate
        beep = ((t % 1.0) < 0.040).astype(np.float32)
        samples = (0.5 * beep * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
        # interleave: a second of video, then a second of audio, and so on
        per_second = int(fps)
        for s in range(seconds):
            for j, img in enumerate(frames[s * per_second : (s + 1) * per_second]):
                frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
                frame.pts, frame.time_base = s * per_second + j, 1 / fps
                for packet in video.encode(frame):
                    container.mux(packet)
            chunk = samples[s * rate : (s + 1) * rate]
            for k in range(0, rate, 1024):
                piece = chunk[k : k + 1024]
                af = av.AudioFrame.from_ndarray(piece[None, :].copy(), format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = rate, s * rate + k, Fraction(1, rate)
                for packet in audio.encode(af):
                    container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)


def gradient_10bit(path: str) -> None:
    """H.265 Main10 with bt709 tags: a 1024-level ramp and a moving bar."""
    fps, width, height = Fraction(24000, 1001), 320, 180
    with av.open(path, "w") as container:
        stream = _video_stream(
            container,
            "libx265",
            fps,
            width,
            height,
            "yuv420p10le",
            crf="12",
            preset="fast",
            **{"x265-params": "log-level=error:pools=1:frame-threads=1"},
        )
        ctx = stream.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = 1, 1, 1, 1
        ramp = np.linspace(0.25, 0.5, width)  # 256 8-bit levels over 320 px: 10-bit has 4x more
        frames = []
        for i in range(36):
            img = np.empty((height, width, 3), np.float32)
            img[:] = ramp[None, :, None]
            x = 8 * i % (width - 16)
            img[60:120, x : x + 16] = (0.8, 0.3, 0.1)
            frames.append((img * 65535 + 0.5).astype(np.uint16))
        _encode(
            container,
            stream,
            frames,
            fps,
            "yuv420p10le",
            src_fmt="rgb48le",
            dst_colorspace="ITU709",
            dst_color_range="MPEG",
        )


def odd_size(path: str) -> None:
    """642x362 H.264."""
    fps, width, height = Fraction(30), 642, 362
    with av.open(path, "w") as container:
        stream = _video_stream(container, "libx264", fps, width, height, "yuv420p", crf="28", preset="medium")
        base = texture(height, width, 2)
        frames = [np.roll(base, 4 * i, axis=1) for i in range(30)]
        _encode(container, stream, frames, fps, "yuv420p")


def motion(path: str) -> None:
    """Textured shapes moving over a textured background, 64 frames at 320x180."""
    fps, width, height = Fraction(25), 320, 180
    background = texture(height * 2, width * 2, 3)
    disc_tex = texture(64, 64, 4)
    square_tex = texture(48, 48, 5)
    y, x = np.mgrid[0:64, 0:64]
    disc = (x - 31.5) ** 2 + (y - 31.5) ** 2 <= 30**2
    frames = []
    for i in range(64):
        ox, oy = int(2 * i), int(i // 2)
        img = background[oy : oy + height, ox : ox + width].copy()
        cx, cy = 20 + int(3.5 * i), 40 + int(40 * np.sin(i / 10))
        region = img[cy : cy + 64, cx : cx + 64]
        h, w = region.shape[:2]
        region[disc[:h, :w]] = disc_tex[:h, :w][disc[:h, :w]]
        sx, sy = 260 - int(3 * i), 110 - int(i // 3)
        img[sy : sy + 48, max(sx, 0) : sx + 48] = square_tex[:, max(-sx, 0) :][
            :, : img[sy : sy + 48, max(sx, 0) : sx + 48].shape[1]
        ]
        frames.append(img)
    with av.open(path, "w") as container:
        stream = _video_stream(container, "libx264", fps, width, height, "yuv420p", crf="14", preset="medium")
        ctx = stream.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = 1, 1, 6, 1
        _encode(container, stream, frames, fps, "yuv420p", dst_colorspace="ITU601", dst_color_range="MPEG")


def rotated(path: str) -> None:
    """A clip whose display matrix says rotate 90 degrees counter-clockwise."""
    fps, width, height = Fraction(25), 160, 96
    with av.open(path, "w") as container:
        stream = _video_stream(container, "libx264", fps, width, height, "yuv420p", crf="20")
        stream.set_display_rotation(90)
        frames = []
        for i in range(10):
            img = np.full((height, width, 3), 40, np.uint8)
            img[:32, :32] = 255  # coded top-left corner
            img[-16:, 40 + 4 * i : 56 + 4 * i] = (0, 200, 0)
            frames.append(img)
        _encode(container, stream, frames, fps, "yuv420p")


CLIPS = {
    "tone_flash_640x360.mp4": sync_clip,
    "gradient_10bit_h265.mp4": gradient_10bit,
    "odd_size_642x362.mp4": odd_size,
    "motion_320x180.mp4": motion,
    "rotated_90.mp4": rotated,
}


def main(argv: list[str] | None = None) -> int:
    """Write every clip into the given folder (default: this folder)."""
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else HERE
    os.makedirs(out, exist_ok=True)
    for name, make in CLIPS.items():
        path = os.path.join(out, name)
        make(path)
        print(f"{path}: {os.path.getsize(path) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
