"""Declarative image specs: the images a proposal describes, which the painter draws (agents.painter).

A spec is a pydantic discriminated union on `kind`, kept JSON-schema friendly (plain strings,
numbers, lists, literals) because real models emit it through structured output. Bounds are
enforced here so a runaway model cannot ask the renderer for a 100000-pixel canvas.

Part of the domain (cadsynth.domain imports ImageSpec from here, so this module must not import it).
"""

from __future__ import annotations

import math
import re
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


# --- science domains: drawings whose facts are computed from the spec -------------------------
# Chemistry (RDKit), physics (SchemDraw), math, biology and geography (Pillow); the
# drawers are agents.painter.{chemistry,circuits,plots,genetics,maps}.

MAX_SMILES = 150
MAX_ATOMS = 60  # heavy atoms: more is unreadable at any canvas size this spec allows
_NOT_SMILES = re.compile(r"[^A-Za-z0-9@+\-\[\]()=#$/\\%.:*]")


class Molecule(_Spec):
    """A structural formula drawn from SMILES. Atom counts, rings and the formula are computed
    from the SMILES; a SMILES that RDKit cannot read is refused when painted (SpecError)."""

    kind: Literal["molecule"] = "molecule"
    smiles: str = Field(
        min_length=1, max_length=MAX_SMILES,
        description="The molecule as SMILES, e.g. 'CCO' for ethanol or 'c1ccccc1' for benzene",
    )
    name: Label = Field(default="", description="Caption under the drawing (e.g. the molecule's name); empty for none")
    atom_numbers: bool = Field(default=False, description="Print each heavy atom's number (1, 2, ...) beside it")
    rotation: int = Field(default=0, ge=0, lt=360, description="Turn the drawing by this many degrees")

    @field_validator("smiles")
    @classmethod
    def _smiles_characters(cls, v: str) -> str:
        bad = _NOT_SMILES.search(v)
        if bad:
            raise ValueError(f"{v[:40]!r} has {bad.group()!r}, which SMILES does not use")
        return v


OhmLabel = Annotated[str, Field(min_length=1, max_length=6, pattern=r"^[A-Za-z][A-Za-z0-9]{0,5}$")]


class Resistor(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: OhmLabel = Field(description="Its name in the drawing, e.g. 'R1'")
    ohms: float = Field(gt=0, le=1e6, description="Resistance in ohms")
    show_value: bool = Field(default=True, description="Print the resistance beside the name")


class Branch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resistors: list[Resistor] = Field(min_length=1, max_length=3, description="Resistors in series, left to right")


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    branches: list[Branch] = Field(
        min_length=1, max_length=4, description="One branch: resistors in series; more: branches in parallel"
    )


class Circuit(_Spec):
    """A battery driving stages in series, left to right; a stage is one branch or parallel branches.
    Equivalent resistance, currents and voltages follow from series and parallel rules."""

    kind: Literal["circuit"] = "circuit"
    volts: float = Field(gt=0, le=1000, description="Battery voltage")
    show_volts: bool = Field(default=True, description="Print the voltage beside the battery")
    stages: list[Stage] = Field(min_length=1, max_length=5, description="Stages in series around the loop")

    @field_validator("stages")
    @classmethod
    def _names(cls, stages: list[Stage]) -> list[Stage]:
        names = [r.name for s in stages for b in s.branches for r in b.resistors]
        if len(names) > 12:
            raise ValueError(f"{len(names)} resistors is too many to draw (at most 12)")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"resistor names must be unique; {', '.join(twice)} repeats")
        return stages


class Curve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expr: str = Field(
        min_length=1, max_length=120,
        description="y as an expression in x: numbers, x, pi, e, + - * / ^, parentheses, sin cos tan exp ln log sqrt abs",
    )
    label: Label = Field(description="Legend name, e.g. 'f(x)'")
    color: ColorName | None = Field(default=None, description="Line colour; null picks one")

    @field_validator("expr")
    @classmethod
    def _parses(cls, v: str) -> str:
        from cadsynth.expr import ExpressionError, parse

        try:
            parse(v)
        except ExpressionError as exc:
            raise ValueError(f"{v[:40]!r}: {exc}") from None
        return v


class PlotPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    x: float = Field(ge=-1e4, le=1e4)
    y: float = Field(ge=-1e4, le=1e4)
    label: Label = Field(default="", description="Text beside the dot, e.g. 'P'")


class FunctionPlot(_Spec):
    """Curves y = f(x) over [x_min, x_max] on a grid, with a legend and optional labelled points."""

    kind: Literal["function_plot"] = "function_plot"
    curves: list[Curve] = Field(min_length=1, max_length=4, description="Functions drawn in order")
    x_min: float = Field(ge=-1e4, le=1e4)
    x_max: float = Field(ge=-1e4, le=1e4)
    y_min: float | None = Field(default=None, ge=-1e4, le=1e4, description="Bottom of the view; null fits the curves")
    y_max: float | None = Field(default=None, ge=-1e4, le=1e4, description="Top of the view; null fits the curves")
    x_label: Label = Field(default="x")
    y_label: Label = Field(default="y")
    points: list[PlotPoint] = Field(default_factory=list, max_length=8, description="Marked points")

    @model_validator(mode="after")
    def _ranges(self) -> FunctionPlot:
        if self.x_max <= self.x_min:
            raise ValueError(f"x_max ({fmt_number(self.x_max)}) must be greater than x_min ({fmt_number(self.x_min)})")
        if (self.y_min is None) != (self.y_max is None):
            raise ValueError("give both y_min and y_max, or neither")
        if self.y_min is not None and self.y_max is not None and self.y_max <= self.y_min:
            raise ValueError(f"y_max ({fmt_number(self.y_max)}) must be greater than y_min ({fmt_number(self.y_min)})")
        return self


Genotype = Annotated[
    str, Field(min_length=2, max_length=4, pattern=r"^([A-Za-z][A-Za-z]){1,2}$", description="e.g. 'Aa' or 'AaBb'")
]


class Trait(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gene: str = Field(pattern=r"^[A-Z]$", description="The gene's capital letter")
    dominant: Label = Field(description="Phenotype with at least one capital allele, e.g. 'purple flowers'")
    recessive: Label = Field(description="Phenotype with two small alleles, e.g. 'white flowers'")


class PunnettSquare(_Spec):
    """A Punnett square for a cross of one or two genes (complete dominance: a capital allele is
    dominant). Gametes head the rows (parent1) and columns (parent2); a legend names the traits."""

    kind: Literal["punnett_square"] = "punnett_square"
    parent1: Genotype = Field(description="Mother's genotype: alleles in pairs, e.g. 'Aa' or 'AaBb'")
    parent2: Genotype = Field(description="Father's genotype, the same genes in the same order")
    fill_cells: bool = Field(default=True, description="Print each offspring genotype in its cell")
    traits: list[Trait] = Field(default_factory=list, max_length=2, description="Legend: what each gene shows")

    @model_validator(mode="after")
    def _genes(self) -> PunnettSquare:
        genes = []
        for field, g in (("parent1", self.parent1), ("parent2", self.parent2)):
            pairs = [g[i : i + 2] for i in range(0, len(g), 2)]
            for p in pairs:
                if p[0].upper() != p[1].upper():
                    raise ValueError(f"{field} {g!r}: {p!r} pairs two genes; write the two alleles of one gene, e.g. 'Aa'")
            letters = [p[0].upper() for p in pairs]
            if len(set(letters)) != len(letters):
                raise ValueError(f"{field} {g!r} names gene {letters[0]} twice")
            genes.append(letters)
        if genes[0] != genes[1]:
            raise ValueError(f"parent2 has genes {''.join(genes[1])} but parent1 has {''.join(genes[0])}; cross the same genes")
        extra = [t.gene for t in self.traits if t.gene not in genes[0]]
        if extra or len({t.gene for t in self.traits}) != len(self.traits):
            raise ValueError(f"traits name genes {', '.join(t.gene for t in self.traits)}; each once, of {''.join(genes[0])}")
        return self


class Place(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Label = Field(description="Name printed beside the dot")
    x: float = Field(ge=0, le=1e4, description="Kilometres east of the map's left edge")
    y: float = Field(ge=0, le=1e4, description="Kilometres north of the map's bottom edge")


class Road(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Label = Field(description="A place's name")
    end: Label = Field(description="Another place's name")


class SchematicMap(_Spec):
    """A north-up schematic map: places on a kilometre grid with labelled grid lines, a scale bar
    and a compass. Distances and bearings between places follow from their coordinates."""

    kind: Literal["map"] = "map"
    width_km: float = Field(gt=0, le=1e4, description="East-west extent")
    height_km: float = Field(gt=0, le=1e4, description="North-south extent")
    grid_km: float = Field(gt=0, le=1e4, description="Grid spacing; the grid lines are labelled in km")
    scale_km: float = Field(gt=0, le=1e4, description="Length of the scale bar")
    places: list[Place] = Field(min_length=1, max_length=16)
    roads: list[Road] = Field(default_factory=list, max_length=20, description="Straight roads between places")

    @model_validator(mode="after")
    def _fits(self) -> SchematicMap:
        lines = max(self.width_km, self.height_km) / self.grid_km
        if lines > 40:
            raise ValueError(f"grid_km {fmt_number(self.grid_km)} gives {int(lines)} grid lines; at most 40 across")
        if self.scale_km > self.width_km:
            raise ValueError(f"scale_km {fmt_number(self.scale_km)} is longer than the map ({fmt_number(self.width_km)} km)")
        names = [p.name for p in self.places]
        for i, p in enumerate(self.places):
            if p.x > self.width_km or p.y > self.height_km:
                raise ValueError(f"places[{i}] ({p.name!r}) lies outside the {fmt_number(self.width_km)} x {fmt_number(self.height_km)} km map")
            if names.count(p.name) > 1:
                raise ValueError(f"place names must be unique; {p.name!r} repeats")
        for i, r in enumerate(self.roads):
            for end in (r.start, r.end):
                if end not in names:
                    raise ValueError(f"roads[{i}] names {end!r}, which is not a place")
        return self


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
    Union[BarChart, LineChart, PieChart, Table, GeometryFigure, ShapeScene,
          Molecule, Circuit, FunctionPlot, PunnettSquare, SchematicMap,
          VegaLiteChart, SvgImage],
    Field(discriminator="kind"),
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
