"""Inference: runtime loading, detector, recognizer and decoding."""
