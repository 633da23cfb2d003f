"""Plumbing shared by training and inference: process groups (``distributed``), device and
precision (``device``).  Nothing here knows of models, data or modalities."""
