"""Fakes of the product's interfaces, one module per interface, named after it.

- ``bus``: a ``bridge.bus.Subscription`` the test feeds by hand.
- ``analyzers``: a ``bridge.media.worker.Analyzer`` that loads no model.
- ``models``: an ``inference.runtime.Model``, and the onnxruntime session ``as_model`` wraps.
- ``tracks``: aiortc ``MediaStreamTrack`` s, a camera (video) and a microphone (audio).
- ``adapters``: a ``bridge.rooms.MeetingAdapter`` that joins no real meeting.
- ``store``: the store writer's session factory with the database away, and a driver error.

Each fake is configured by constructor options (a delay, a failure at a given call, a gate,
call counts) so one class covers the variants tests need; each module ends with a check that
mypy runs, assigning a fake to its interface's type.
"""
