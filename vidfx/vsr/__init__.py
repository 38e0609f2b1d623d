"""Video super-resolution in the VideoGigaGAN style (Xu et al. 2024), sized for CPUs.

Architecture (``arch``), building blocks (``blocks``), optical flow (``flow``), MATLAB-style
resizing (``resize``), degradations and training clips (``degrade``, ``data``), losses
(``losses``), training (``train``), evaluation (``evaluate``), tiling (``tiling``) and the
engine node ``vsr`` (``node``) all live here. See docs/vsr.md.
"""
