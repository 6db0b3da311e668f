"""Helpers and fixtures shared by several test modules (no test module imports another)."""
