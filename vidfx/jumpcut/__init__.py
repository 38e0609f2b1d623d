"""Jump-cut smoothing for talking heads (after Wang et al. 2024, "Jump Cut Smoothing for Talking Heads").

Pieces, one module each:

- ``keypoints``: face/body keypoints from models shipped in PyPI packages (MediaPipe face mesh + pose,
  dlib 68-point fallback) behind a small ``KeypointDetector`` interface; temporal smoothing.
- ``cuts``: where the cuts are (auto detection, frame numbers, timecodes, OTIO timelines, CMX3600 EDLs).
- ``interpolate``: eased, head-pose aware keypoint interpolation across a cut.
- ``baselines``: crossfade and DIS optical-flow interpolation.
- ``model``: the cross-modal attention synthesizer and its small generator.
- ``synthesize``: turns end frames + sources into transition frames with any method (shared by node and eval).
- ``train`` / ``evaluate``: ``vidfx train jumpcut`` and ``vidfx eval jumpcut``.
- ``node``: the ``jumpcut`` graph node.
"""
