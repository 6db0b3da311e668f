"""Spotting benchmark: synthetic ground truth from real faces, MEGC-style scoring."""
