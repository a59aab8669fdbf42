"""Display helpers: the heatmap colour scale the engine writes out equals the one plotly samples."""

from __future__ import annotations

import numpy as np
import plotly.colors as pc
import pytest

from anomascope.engine.display import COLOUR_SCALES, colormap_lut


@pytest.mark.parametrize("name", sorted(COLOUR_SCALES))
def test_colour_scale_equals_plotlys(name):
    samples = pc.sample_colorscale(name, list(np.linspace(0.0, 1.0, 256)))
    expected = np.round([pc.unlabel_rgb(colour) for colour in samples]).astype(np.uint8)
    np.testing.assert_array_equal(colormap_lut(name), expected)
