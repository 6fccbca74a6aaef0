"""Datasets, label tables, augmentation and loaders."""
