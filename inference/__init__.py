"""MicroCue inference package."""
