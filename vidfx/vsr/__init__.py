"""Video super-resolution in the VideoGigaGAN style (Xu et al. 2024), sized for CPUs.

Architecture (``arch``), building blocks (``blocks``), degradations and training clips
(``degrade``, ``data``), losses (``losses``), training (``train``), evaluation
(``evaluate``), tiling (``tiling``) and the engine node ``vsr`` (``node``) live here; optical
flow, warping, resizing and weights files are shared with the other families in
``vidfx.ops``. See docs/vsr.md.
"""
