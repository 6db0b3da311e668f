"""The demo participant and its tools: a real face with scripted expressions, paced media tracks,
a built-in-room client, and the private network namespace WebRTC runs in on closed machines."""
