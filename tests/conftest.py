"""Fixtures several test files share (nothing here changes how other tests run)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clips"


@pytest.fixture
def shared_clips() -> Path:
    """The development clips (../shared/data/clips); CI has them, so their absence is a failure."""
    assert SHARED_CLIPS.is_dir(), f"development data missing: {SHARED_CLIPS}"
    return SHARED_CLIPS
