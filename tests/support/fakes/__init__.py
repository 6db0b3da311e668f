"""Fakes of the product's interfaces, one module per interface, named after it.

- ``bus``: a ``bridge.bus.Subscription`` the test feeds by hand.
- ``analyzers``: a ``bridge.media.worker.Analyzer`` that loads no model.
- ``models``: an ``inference.runtime.Model``, and the onnxruntime session ``as_model`` wraps.
- ``tracks``: aiortc media tracks (``MediaStreamTrack``): a camera (video) and a microphone (audio).
- ``adapters``: a ``bridge.rooms.MeetingAdapter`` that joins no real meeting.
- ``store``: the store writer's session factory with the database away, and a driver error.

Each fake is configured by constructor options (a delay, a failure at a given call, a gate,
call counts) so one class covers the variants tests need. mypy checks every fake against its
interface: a fake of a protocol is assigned to the protocol's type at the end of its module, a
fake of a base class (track, meeting adapter) subclasses it.
"""
