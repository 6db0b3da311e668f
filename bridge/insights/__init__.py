"""What a meeting leaves behind: the summary, sales coaching and reports, all from stored cues.

``timeline`` holds the interval arithmetic both the summary and coaching build on.
"""
