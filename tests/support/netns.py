"""For tests whose program makes its own network namespace (``microcue demo``)."""

from __future__ import annotations

import pytest

from bridge.demo.netns import netns_usable
from tests.services import services_required


def require_netns() -> None:
    """Skip (locally) or fail (CI) where no private network namespace can be made."""
    problem = netns_usable()
    if problem is None:
        return
    if services_required():
        pytest.fail(f"{problem} and MICROCUE_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(problem)
