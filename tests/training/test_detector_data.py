"""The detector's scene cache: a larger split of a seed reuses a smaller cached one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training import detector_data


def test_a_larger_split_extends_the_cached_prefix_to_the_same_arrays(tmp_path: Path) -> None:
    """Growing --n-train must not re-render the scenes already cached (8,000 take minutes),
    and the extended split must equal one rendered from scratch, or training would silently
    change with the cache's history."""
    small = detector_data.load_or_make(7, 3, workers=1, cache_dir=tmp_path)
    assert detector_data.cache_path(7, 3, tmp_path).exists()
    grown = detector_data.load_or_make(7, 5, workers=1, cache_dir=tmp_path)
    fresh = detector_data.make_split(7, 5, workers=1, progress=False)
    assert set(grown) == set(fresh)
    for key in fresh:
        np.testing.assert_array_equal(grown[key], fresh[key], err_msg=key)
    np.testing.assert_array_equal(grown["x"][:3], small["x"])
    assert detector_data.cache_path(7, 5, tmp_path).exists()


def test_an_unreadable_cache_is_regenerated(tmp_path: Path) -> None:
    """A truncated cache file (disk full, killed run) is ignored with a warning, not fatal."""
    path = detector_data.cache_path(9, 2, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    data = detector_data.load_or_make(9, 2, workers=1, cache_dir=tmp_path)
    assert data["x"].shape[0] == 2
