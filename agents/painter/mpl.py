"""Matplotlib for the painter: Agg only, the font shipped inside matplotlib, pixels into Pillow.

Figures are built with the object API (no pyplot state) on an Agg canvas, so no display backend is
ever asked for, and under matplotlib's default settings (`defaults()`), so a matplotlibrc on the
machine changes nothing. Text is set in the DejaVu Sans that matplotlib ships: its font list puts
its own fonts first, and `defaults()` checks that the name finds that file; where it would not,
every text is given the file by path. The same spec gives the same pixels anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

DPI = 100
FAMILY = "DejaVu Sans"


@lru_cache(maxsize=1)
def font_path() -> str:
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")


@lru_cache(maxsize=1)
def _name_finds_the_bundled_font() -> bool:
    from matplotlib import font_manager

    found = font_manager.findfont(font_manager.FontProperties(family=[FAMILY]), fallback_to_default=False)
    return Path(found).resolve() == Path(font_path()).resolve()


@contextmanager
def defaults() -> Iterator[None]:
    """Matplotlib's default settings and the bundled font, for building and drawing a figure."""
    import matplotlib

    with matplotlib.rc_context():  # restores the process's settings on leaving
        matplotlib.rcdefaults()
        matplotlib.rcParams["font.family"] = [FAMILY]
        yield


def figure(width: int, height: int) -> Any:
    """A white figure of exactly width x height pixels on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def bundled_fonts(fig: Any) -> None:
    """Every text of the figure in the bundled font by path, at the size it was given: where the
    font's name would find another file."""
    if _name_finds_the_bundled_font():
        return
    from matplotlib.font_manager import FontProperties
    from matplotlib.text import Text

    path = font_path()
    for ax in fig.axes:  # tick labels are made on demand: make them now, to set their font
        ax.xaxis.get_major_ticks()
        ax.yaxis.get_major_ticks()
    for text in fig.findobj(Text):
        text.set_fontproperties(FontProperties(fname=path, size=text.get_fontsize(), weight=text.get_fontweight()))


def paste(img: Image.Image, fig: Any, box: tuple[int, int] = (0, 0)) -> None:
    """Draw the figure and paste its pixels into img at box (its top-left corner)."""
    bundled_fonts(fig)
    fig.canvas.draw()
    rgba = fig.canvas.buffer_rgba()
    w, h = fig.canvas.get_width_height()
    img.paste(Image.frombuffer("RGBA", (w, h), rgba, "raw", "RGBA", 0, 1).convert("RGB"), box)
