"""MicroCue web package."""
