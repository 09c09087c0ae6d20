"""The browser the staff-side browser tests drive (the recipient tests bring their own, with a downloads folder)."""
from __future__ import annotations

import pytest

from .screenshots import chromium


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "downloads") as driver:
        yield driver
