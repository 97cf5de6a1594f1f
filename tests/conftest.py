"""Shared fixtures: where the real datasets are (../shared/data beside the checkout)."""
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("REFTUNE_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data files; CI must have them (a skip there would hide a broken check)."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the shared data folder at {SHARED_DATA}")
        pytest.skip(f"no shared data at {SHARED_DATA} (set REFTUNE_SHARED_DATA)")
    return SHARED_DATA
