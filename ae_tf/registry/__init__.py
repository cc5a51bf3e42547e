"""Versioned models and embeddings stores: the registry, its champion pointer, retraining, the store."""
