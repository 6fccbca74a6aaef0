"""fasterseg: latency-aware architecture search for real-time semantic segmentation.

A clean rebuild of FasterSeg (Chen et al., 2019): a multi-resolution supernet searched for a
teacher and a latency-constrained student, decoded into plain architecture files, retrained and
distilled.
"""

__version__ = "0.1.0"
