"""Algorithms on numpy arrays of vectors (no TensorFlow, no Beam): PCA, dedup, k-means, hashing, codes."""
