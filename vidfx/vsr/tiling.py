"""Spatial tiling with overlap for upscalers (no seams, bounded memory).

The LR frames are cut into the fewest equal tiles of at most ``tile`` x ``tile`` pixels
that overlap by at least ``overlap`` pixels. Each tile is upscaled on its own; in the output, overlapping tiles are
blended with linear ramps that fall to zero towards a tile's inner edges, so the weights of
neighbours sum to one and no seam is visible. Image borders get full weight.
(Candidate for vidfx/core once other nodes need it.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def tile_starts(size: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """``(starts, length)``: the fewest tiles of at most ``tile`` pixels that cover
    ``0..size`` with at least ``overlap`` shared pixels between neighbours, all of the same
    ``length`` and spread evenly (so no tile is mostly overlap); the last ends at ``size``."""
    if tile <= 0 or size <= tile:
        return [0], size
    n = -(-(size - overlap) // max(tile - overlap, 1))
    length = min(-(-(size + (n - 1) * overlap) // n), size)
    if n == 1:
        return [0], size
    starts = [round(i * (size - length) / (n - 1)) for i in range(n)]
    return starts, length


def _ramp(length: int, left: int, right: int) -> torch.Tensor:
    """Weights along one axis of one tile: linear ramps of ``left``/``right`` pixels at the
    ends that touch a neighbour (0 outside), 1 inside."""
    w = torch.ones(length)
    if left > 0:
        w[:left] = (torch.arange(left, dtype=torch.float32) + 0.5) / left
    if right > 0:
        w[length - right :] = torch.minimum(
            w[length - right :], (torch.arange(right, 0, -1, dtype=torch.float32) - 0.5) / right
        )
    return w


def tiled_upscale(
    fn: Callable[[slice, slice], torch.Tensor],
    height: int,
    width: int,
    scale: int,
    tile: int,
    overlap: int,
    lead_shape: tuple[int, ...],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Run ``fn(ys, xs)`` for every LR tile window (``ys``, ``xs`` are slices of the LR
    frame) and blend the upscaled results (..., (ys)*scale, (xs)*scale) into one output of
    shape ``lead_shape + (height*scale, width*scale)``."""
    ys_list, th = tile_starts(height, tile, overlap)
    xs_list, tw = tile_starts(width, tile, overlap)
    if len(ys_list) == 1 and len(xs_list) == 1:
        return fn(slice(0, height), slice(0, width))
    out = torch.zeros(*lead_shape, height * scale, width * scale, device=device)
    wsum = torch.zeros(height * scale, width * scale, device=device)
    for iy, y0 in enumerate(ys_list):
        for ix, x0 in enumerate(xs_list):
            # overlap with the previous / next tile on each axis (0 at the image border)
            top = (ys_list[iy - 1] + th - y0) if iy > 0 else 0
            bottom = (y0 + th - ys_list[iy + 1]) if iy + 1 < len(ys_list) else 0
            left = (xs_list[ix - 1] + tw - x0) if ix > 0 else 0
            right = (x0 + tw - xs_list[ix + 1]) if ix + 1 < len(xs_list) else 0
            piece = fn(slice(y0, y0 + th), slice(x0, x0 + tw))
            wy = _ramp(th * scale, top * scale, bottom * scale).to(device)
            wx = _ramp(tw * scale, left * scale, right * scale).to(device)
            w = wy[:, None] * wx[None, :]
            oy, ox = y0 * scale, x0 * scale
            out[..., oy : oy + th * scale, ox : ox + tw * scale] += piece.float() * w
            wsum[oy : oy + th * scale, ox : ox + tw * scale] += w
    return out / wsum.clamp_min(1e-8)
