"""MicroCue bridge package."""
