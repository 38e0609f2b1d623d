"""Keypoint interpolation across simulated gaps in the clips of the validation identities.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/jumpcut_interp_tuning.py [--split val]

For every placement of a GAP-frame gap whose frames (ends, the frames before/after them for the
velocities, and the missing ones) all lie outside the segments the evaluation removes
(``evaluate.eval_gaps``), the face mesh interpolated from the ends is compared with the mesh
detected on the missing frames (MediaPipe, static mode, like the evaluation's landmark error).
This is where ``interpolate.VELOCITY_DAMPING`` and the "no one-sided smoothing" default are
checked; prints a Markdown table (mean px over all placements and per clip). Clips are read as
the evaluation reads them (``identities.read_face_clip``, 512x512).
"""

from __future__ import annotations

import argparse
import os
import pickle

import numpy as np

from vidfx.jumpcut import identities as ids
from vidfx.jumpcut.evaluate import eval_gaps
from vidfx.jumpcut.interpolate import interpolate_keypoints, transition_times
from vidfx.jumpcut.keypoints import MediaPipeDetector, smooth_sequence


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gap", type=int, default=12)
    ap.add_argument("--side", type=int, default=4, help="frames each side used for the one-sided smoothing row")
    ap.add_argument("--split", default="val", choices=("val", "train", "all"))
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "vidfx", "jumpcut"))
    args = ap.parse_args()
    args.cache = os.path.join(args.cache, f"static_kps_512_face_{args.split}.pkl")
    if os.path.exists(args.cache):
        with open(args.cache, "rb") as fh:
            allk = pickle.load(fh)
    else:
        det = MediaPipeDetector(video_mode=False, with_body=True)
        allk = {
            name: [det.detect(f) for f in ids.read_face_clip(ids.clip_path(name), size=512)[0]]
            for name in ids.identities(args.split)
        }
        os.makedirs(os.path.dirname(args.cache), exist_ok=True)
        with open(args.cache, "wb") as fh:
            pickle.dump(allk, fh)
    gap, side = args.gap, args.side
    span = gap + 1
    times = transition_times(gap)
    variants = [("smoothed ends (sigma 1, one-sided), no velocity", 1.0, None)]
    variants += [(f"raw ends, velocity damping {d}", 0.0, d) for d in (0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0)]
    rows = {name: {} for name, _, _ in variants}
    count = 0
    for clip, kps in allk.items():
        n = len(kps)
        banned = set()
        for s in eval_gaps(n, 12, 3, 12):
            banned.update(range(s, s + 12))
        for a in range(side, n - span - side):
            b = a + span
            if any(i in banned or kps[i].face is None for i in range(a - side, b + side + 1)):
                continue
            count += 1
            for name, sigma, damping in variants:
                before = smooth_sequence(kps[a - side : a + 1], sigma)
                after = smooth_sequence(kps[b : b + side + 1], sigma)
                mids = interpolate_keypoints(
                    before[-1],
                    after[0],
                    times,
                    "smoothstep",
                    before[-2],
                    after[1],
                    span=span if damping is not None else None,
                    damping=damping if damping is not None else 0.0,
                )
                err = np.mean(
                    [
                        np.linalg.norm(m.face[:, :2] - kps[a + 1 + j].face[:, :2], axis=1).mean()
                        for j, m in enumerate(mids)
                    ]
                )
                rows[name].setdefault(clip, []).append(err)
    print(f"{count} gap placements of {gap} frames in the {args.split} identities' clips\n")
    clips = list(allk)
    print("| variant | mean px | " + " | ".join(c.split("/")[-1] for c in clips) + " |")
    print("|---|---|" + "---|" * len(clips))
    for name, per in rows.items():
        allv = [e for v in per.values() for e in v]
        print(
            f"| {name} | {np.mean(allv):.2f} | "
            + " | ".join(f"{np.mean(per.get(c, [np.nan])):.2f}" for c in clips)
            + " |"
        )


if __name__ == "__main__":
    main()
