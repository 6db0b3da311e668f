"""Media in: peer connections, the per-participant video and voice workers, and video files.

Everything between "a remote track (or a file) delivers frames" and "the analyzer's cues go on
the bus" lives here, the same for every kind of meeting.
"""
