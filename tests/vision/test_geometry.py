"""Quad arithmetic the reader's retries rely on."""

from __future__ import annotations

import numpy as np
import pytest

from agent.vision.geometry import quad_axes, stretch_quad

#: A line 100 px long and 10 px tall, tilted 30 degrees, ordered TL, TR, BR, BL.
_U = np.array([np.cos(np.radians(30)), np.sin(np.radians(30))], np.float32)
_N = np.array([-_U[1], _U[0]], np.float32)
LINE = np.array([[0, 0], 100 * _U, 100 * _U + 10 * _N, 10 * _N], np.float32)
LINE += np.array([50, 40], np.float32)


@pytest.mark.parametrize("before", [0.0, 0.5, 1.0])
def test_stretch_changes_the_length_only(before: float) -> None:
    """Growing a fragment to hold 17 characters must not change its height or axis."""
    _, u0, length0, height0 = quad_axes(LINE)
    _, u1, length1, height1 = quad_axes(stretch_quad(LINE, 1.8, before))
    assert length1 == pytest.approx(1.8 * length0, rel=1e-4)
    assert height1 == pytest.approx(height0, rel=1e-4)
    assert float(u0 @ u1) == pytest.approx(1.0, abs=1e-5)


def test_stretch_keeps_the_end_it_is_anchored_at() -> None:
    """A fragment at the start of a line grows past its end, one at the end ahead of its
    start; which end is which follows the quad's reading order."""
    past = stretch_quad(LINE, 2.0, before=0.0)
    np.testing.assert_allclose(past[[0, 3]], LINE[[0, 3]], atol=1e-4)
    np.testing.assert_allclose(past[1] - LINE[0], 2 * (LINE[1] - LINE[0]), atol=1e-4)
    ahead = stretch_quad(LINE, 2.0, before=1.0)
    np.testing.assert_allclose(ahead[[1, 2]], LINE[[1, 2]], atol=1e-4)
    both = stretch_quad(LINE, 2.0, before=0.5)
    np.testing.assert_allclose(both.mean(0), LINE.mean(0), atol=1e-4)


def test_stretch_by_one_is_the_identity() -> None:
    np.testing.assert_allclose(stretch_quad(LINE, 1.0, 0.3), LINE, atol=1e-5)
