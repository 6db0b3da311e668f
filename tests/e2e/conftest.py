"""WebRTC tests here ask for the ``netns`` fixture and run inside a private network namespace."""

from tests.e2e.netns import netns, pytest_collection_modifyitems, pytest_runtest_protocol

__all__ = ["netns", "pytest_collection_modifyitems", "pytest_runtest_protocol"]
