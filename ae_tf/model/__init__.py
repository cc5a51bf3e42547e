"""The model side: families, training, export and the loaded model applied to batches (TensorFlow)."""
