"""Declarative image specs: the images a proposal describes, which the painter draws (agents.painter).

A spec is a pydantic discriminated union on `kind`, kept JSON-schema friendly (plain strings,
numbers, lists, literals) because real models emit it through structured output. Bounds are
enforced here so a runaway model cannot ask the renderer for a 100000-pixel canvas.

Part of the domain (cadsynth.domain imports ImageSpec from here, so this module must not import it).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from cadsynth import untrusted
from cadsynth.text import clean, cleaned

# Named colours a spec may use. Black, white and gray are left out on purpose: text and axes use
# them, so a palette colour can always be told apart from ink by its exact RGB value.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "orange": (245, 130, 20),
    "yellow": (235, 200, 0),
    "lime": (132, 204, 22),
    "green": (22, 140, 60),
    "teal": (13, 128, 128),
    "cyan": (6, 182, 212),
    "sky": (110, 180, 245),
    "blue": (37, 90, 235),
    "navy": (30, 40, 120),
    "purple": (130, 60, 200),
    "magenta": (200, 0, 160),
    "pink": (245, 120, 175),
    "brown": (140, 85, 40),
    "maroon": (125, 10, 40),
    "olive": (120, 120, 20),
}
ColorName = Literal[
    "red", "orange", "yellow", "lime", "green", "teal", "cyan", "sky",
    "blue", "navy", "purple", "magenta", "pink", "brown", "maroon", "olive",
]  # fmt: skip
# Default colour order for series and slices: neighbours contrast strongly.
CHART_ORDER: tuple[str, ...] = (
    "blue", "orange", "green", "red", "purple", "brown", "pink", "olive",
    "cyan", "navy", "lime", "maroon", "teal", "magenta", "yellow", "sky",
)  # fmt: skip

ShapeName = Literal["circle", "square", "triangle", "star", "hexagon"]
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon")

MAX_SIDE = 2048
MIN_SIDE = 64
# Text a model writes for the image, cleaned (cadsynth.text) like all model text.
Label = Annotated[str, Field(max_length=40), cleaned]
Title = Annotated[str, Field(max_length=80), cleaned]
# Bounded so tick arithmetic and label widths stay sane.
Number = Annotated[float, Field(ge=-1e9, le=1e9)]
Cell = Union[int, Number, Label]


class SpecError(ValueError):
    """A spec that cannot be drawn; the message names the field and the problem in one line."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    width: int = Field(default=640, ge=MIN_SIDE, le=MAX_SIDE, description="Image width in pixels")
    height: int = Field(default=480, ge=MIN_SIDE, le=MAX_SIDE, description="Image height in pixels")
    title: Title = Field(default="", description="Title drawn at the top; empty for none")


# --- charts ----------------------------------------------------------------------------------


class Bar(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    label: Label = Field(description="Category name under the bar")
    value: Number = Field(description="Bar height in axis units")
    color: ColorName | None = Field(default=None, description="Fill colour; null for the default blue")


class BarChart(_Spec):
    kind: Literal["bar_chart"] = "bar_chart"
    x_label: Label = Field(default="", description="Axis title under the categories")
    y_label: Label = Field(default="", description="Axis title beside the value axis")
    bars: list[Bar] = Field(min_length=1, max_length=40, description="Bars left to right")
    show_values: bool = Field(default=True, description="Print each value above its bar")


class Series(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Label = Field(description="Legend name")
    values: list[Number] = Field(min_length=1, max_length=60, description="One value per x label")
    color: ColorName | None = Field(default=None, description="Line colour; null picks one")
    show_values: bool = Field(default=True, description="Print each value above its point")


class LineChart(_Spec):
    kind: Literal["line_chart"] = "line_chart"
    x_label: Label = Field(default="", description="Axis title under the x labels")
    y_label: Label = Field(default="", description="Axis title beside the value axis")
    x_labels: list[Label] = Field(min_length=2, max_length=60, description="Points left to right")
    series: list[Series] = Field(min_length=1, max_length=12, description="Lines; a legend shows when >1")

    @model_validator(mode="after")
    def _lengths_match(self) -> LineChart:
        for i, s in enumerate(self.series):
            if len(s.values) != len(self.x_labels):
                raise ValueError(
                    f"series[{i}] ({s.name!r}) has {len(s.values)} values but there are "
                    f"{len(self.x_labels)} x_labels"
                )
        return self


class Slice(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    label: Label = Field(description="Legend name")
    value: float = Field(gt=0, le=1e9, description="Slice size; shares are value / total")
    color: ColorName | None = Field(default=None, description="Fill colour; null picks one")


class PieChart(_Spec):
    kind: Literal["pie_chart"] = "pie_chart"
    slices: list[Slice] = Field(
        min_length=1, max_length=16, description="Slices clockwise from 12 o'clock; percentages are printed"
    )


class Table(_Spec):
    kind: Literal["table"] = "table"
    columns: list[Label] = Field(min_length=1, max_length=12, description="Header cells")
    rows: list[list[Cell]] = Field(max_length=30, description="Body rows; each as wide as columns")

    @model_validator(mode="after")
    def _rows_fit(self) -> Table:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"rows[{i}] has {len(row)} cells but there are {len(self.columns)} columns")
        return self


# --- figures ---------------------------------------------------------------------------------

# How many side lengths each figure is drawn from, and how many side labels it can carry.
_FIGURE_SIDES = {"triangle": 3, "right_triangle": 2, "rectangle": 2, "circle": 1}
_FIGURE_SIDE_LABELS = {"triangle": 3, "right_triangle": 3, "rectangle": 3, "circle": 1}
_FIGURE_VERTICES = {"triangle": 3, "right_triangle": 3, "rectangle": 4, "circle": 1}


class GeometryFigure(_Spec):
    """A labelled figure drawn to scale from `sides` (or a triangle's `angles`).

    Vertex order: triangle A, B, C with sides [AB, BC, CA]; right_triangle has the right angle at B
    and sides [AB, BC] (legs; CA is the hypotenuse); rectangle ABCD counter-clockwise from bottom
    left with sides [width AB, height BC] (a third side label marks diagonal AC); circle sides [r].
    """

    kind: Literal["geometry"] = "geometry"
    figure: Literal["triangle", "right_triangle", "rectangle", "circle"]
    sides: list[Annotated[float, Field(gt=0, le=1e6)]] = Field(
        default_factory=list, max_length=3, description="True lengths used to draw to scale"
    )
    angles: list[Annotated[float, Field(gt=0, lt=180)]] = Field(
        default_factory=list, max_length=3, description="Triangle only: degrees at A, B, C, used when sides is empty"
    )
    side_labels: list[Label] = Field(
        default_factory=list, max_length=3, description="Text on each side in `sides` order ('' none, '?' unknown)"
    )
    angle_labels: list[Label] = Field(
        default_factory=list, max_length=3, description="Triangles: text inside the angle at A, B, C"
    )
    vertex_names: list[Annotated[str, Field(max_length=3), cleaned]] = Field(
        default_factory=list, max_length=4, description="Vertex letters; a circle's single name marks its centre"
    )
    circle_segment: Literal["radius", "diameter"] = Field(
        default="radius", description="Circle: which segment carries side_labels[0]"
    )
    note: Title = Field(default="", description="Caption under the figure, e.g. 'Use pi = 3.14'")

    @model_validator(mode="after")
    def _figure_fits(self) -> GeometryFigure:
        f = self.figure
        need = _FIGURE_SIDES[f]
        if f == "triangle" and not self.sides:
            if len(self.angles) != 3 or abs(sum(self.angles) - 180) > 0.01:
                raise ValueError("triangle needs sides=[AB, BC, CA] or three angles summing to 180")
        elif len(self.sides) != need:
            raise ValueError(f"{f} needs {need} side length(s), got {len(self.sides)}")
        if f == "triangle" and self.sides:
            a, b, c = sorted(self.sides)
            if a + b <= c * (1 + 1e-9):
                raise ValueError(f"sides {self.sides} break the triangle inequality")
        if f not in ("triangle", "right_triangle") and (self.angles or self.angle_labels):
            raise ValueError(f"{f} takes no angles or angle_labels")
        if len(self.side_labels) > _FIGURE_SIDE_LABELS[f]:
            raise ValueError(f"{f} takes at most {_FIGURE_SIDE_LABELS[f]} side_labels")
        if len(self.vertex_names) > _FIGURE_VERTICES[f]:
            raise ValueError(f"{f} takes at most {_FIGURE_VERTICES[f]} vertex_names")
        return self


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    shape: ShapeName
    color: ColorName = Field(description="Solid fill colour")
    x: float = Field(ge=0, le=1, description="Centre, 0 = left edge .. 1 = right edge")
    y: float = Field(ge=0, le=1, description="Centre, 0 = top (under the title) .. 1 = bottom")
    size: float = Field(ge=0.01, le=0.5, description="Extent as a fraction of the shorter image side")
    label: Label | None = Field(default=None, description="Text printed just below the shape")


class ShapeScene(_Spec):
    kind: Literal["shape_scene"] = "shape_scene"
    shapes: list[Shape] = Field(min_length=1, max_length=60, description="Drawn in order; later ones on top")


# --- untrusted documents: for what no template covers (checked in cadsynth.untrusted) -------------


# Cleaned after the length bound, so a runaway 50 MB document is refused before it is scanned.
Document = Annotated[str, AfterValidator(clean)]


class VegaLiteChart(_Spec):
    """A Vega-Lite chart. Untrusted: inline data only, no URL, expression, transform or facet."""

    kind: Literal["vega_lite"] = "vega_lite"
    vega_lite: Document = Field(
        max_length=untrusted.MAX_VEGA_CHARS,
        description="Vega-Lite JSON: data.values inline, mark, encoding (and layer); no url, transform or expr",
    )

    @field_validator("vega_lite")
    @classmethod
    def _checked(cls, text: str) -> str:
        untrusted.clean_vega_lite(text)
        return text


class SvgImage(_Spec):
    """A model-written SVG. Untrusted: no DTD, script, style sheet, filter, or outside reference."""

    kind: Literal["svg"] = "svg"
    svg: Document = Field(
        max_length=untrusted.MAX_SVG_CHARS,
        description='An SVG document (root <svg xmlns="http://www.w3.org/2000/svg" viewBox=...>); shapes and text, #id references only',
    )

    @field_validator("svg")
    @classmethod
    def _checked(cls, text: str) -> str:
        untrusted.clean_svg(text)
        return text


ImageSpec = Annotated[
    Union[BarChart, LineChart, PieChart, Table, GeometryFigure, ShapeScene, VegaLiteChart, SvgImage], Field(discriminator="kind")
]
_ADAPTER: TypeAdapter[ImageSpec] = TypeAdapter(ImageSpec)


def parse_spec(data: dict) -> ImageSpec:  # type: ignore[type-arg]
    """Validate a dict into a spec, or raise SpecError with the first problem on one line."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        msg = first["msg"].removeprefix("Value error, ")
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(f"{_where(first['loc'])}: {msg}{more}") from None


# Every kind a spec can be: the union's tags, so a kind added to the union is known everywhere.
KINDS: frozenset[str] = frozenset(m.model_fields["kind"].default for m in get_args(get_args(ImageSpec)[0]))
_BRANCHES = {"int", "float", "str", "constrained-str", "constrained-float"}


def _where(loc: tuple[int | str, ...]) -> str:
    """'bars[3].value' from pydantic's ('bar_chart', 'bars', 3, 'value'); union branch names dropped."""
    parts = list(loc)
    if parts and parts[0] in KINDS:
        parts = parts[1:]
    if parts and (parts[-1] in _BRANCHES or str(parts[-1]).startswith("function-")):  # a Label branch
        parts = parts[:-1]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "spec"


# --- text the renderer prints; the world computes truths with the same formatting ------------


def fmt_number(x: float) -> str:
    """Plain number text: at most two decimals, no trailing zeros, no '-0'."""
    r = round(float(x), 2)
    if r == int(r):
        return str(int(r))
    return f"{r:.2f}".rstrip("0").rstrip(".")


def percent_labels(values: list[float]) -> list[str]:
    """Each slice's share as printed on a pie: one decimal at most, e.g. '25%' or '12.5%'."""
    total = math.fsum(values)
    return [f"{fmt_number(round(100 * v / total, 1))}%" for v in values]
