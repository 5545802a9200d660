"""`pedstream data plot`: a real PNG of a synthetic Leipzig record and of the real MIT-BIH excerpt."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
from click.testing import CliRunner

from pedstream.cli import cli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "real"


def test_plot_strip_png(tmp_path, leipzig_folder):
    out = tmp_path / "strip.png"
    res = CliRunner().invoke(cli, ["data", "plot", str(leipzig_folder / "x005"), "--start", "0.5",
                                   "--seconds", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    img = mpimg.imread(out)  # (H, W, 4) float in [0, 1]
    h, w = img.shape[:2]
    assert h > w > 300  # 19 stacked rows, 3 s at 25 mm/s
    rgb = img[..., :3]
    dark = (rgb.max(axis=2) < 0.25).mean()  # traces and text
    pink = ((rgb[..., 0] > 0.9) & (rgb[..., 1] < 0.9) & (rgb[..., 2] < 0.9)).mean()  # the paper grid
    red = ((rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.2) & (rgb[..., 2] < 0.2)).sum()  # clipped samples (V2)
    assert dark > 0.005 and pink > 0.05 and red > 0


def test_plot_real_mitdb_with_aami_and_errors(tmp_path):
    out = tmp_path / "mit.png"
    res = CliRunner().invoke(cli, ["data", "plot", str(FIXTURES / "119"), "--seconds", "5", "--out", str(out),
                                   "--set", "labels.scheme=aami"])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 10_000 and np.asarray(mpimg.imread(out)).ndim == 3
    res = CliRunner().invoke(cli, ["data", "plot", str(FIXTURES / "119"), "--start", "999", "--out", str(out)])
    assert res.exit_code == 2 and "error: record 119: --start 999 s is outside the record (0 to 60.0 s)" in res.output
