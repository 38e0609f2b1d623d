"""Semantic segmentation: a modified-MBConv U-Net trained on CamVid, a MediaPipe person
matte, and flow-guided temporal smoothing, exposed as the ``segment`` node."""
