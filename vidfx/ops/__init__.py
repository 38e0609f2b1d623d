"""Shared operations used by every model family: optical flow, warping, colour and luma,
resampling, weights files."""
