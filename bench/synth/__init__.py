"""Synthetic face video from real faces: known motion, known ground truth."""
