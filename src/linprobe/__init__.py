"""linprobe: which frozen pretrained backbone gives the best linear-probe features for your images."""

__version__ = "0.1.0"
