"""Model converters used once by ``microcue models fetch`` (never at inference time)."""
