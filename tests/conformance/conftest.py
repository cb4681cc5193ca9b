"""Fixtures for the host-kernel conformance tests: namespace pairs made and removed per use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .netns import NetnsPair, NetnsUnavailable


@contextmanager
def netns_pair_made() -> Iterator[NetnsPair]:
    """Board and peer namespaces joined by a veth; removed afterwards whatever happens.

    Fails (does not skip) when namespaces cannot be made: CI runs as root and must run these."""
    pair = NetnsPair()
    try:
        try:
            pair.create()
        except NetnsUnavailable as err:
            pytest.fail(f"host-kernel conformance needs `ip netns` (run as root with iproute2): {err}",
                        pytrace=False)
        yield pair
    finally:
        pair.destroy()

