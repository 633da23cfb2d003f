"""Plumbing shared by training and inference: process groups (``distributed``), device and
precision (``device``), write-then-rename files (``atomic``).  Nothing here knows of models,
data or modalities."""
