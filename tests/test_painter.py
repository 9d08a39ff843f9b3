"""Painter: specs validate with clear refusals, and the PNGs really encode the spec."""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from PIL import Image
from pydantic import ValidationError

from cadsynth.agents.painter import workers
from cadsynth.agents.painter.render import render, spec_digest, spec_stamp
from cadsynth.graphs.legibility import redrawn
from cadsynth.specs import (
    PALETTE,
    SHAPES,
    BarChart,
    GeometryFigure,
    LineChart,
    PieChart,
    ShapeScene,
    SpecError,
    Table,
    parse_spec,
)

SAMPLES: dict[str, dict] = {
    "bar_chart": {
        "kind": "bar_chart", "title": "Fruit sold", "x_label": "Fruit", "y_label": "kg",
        "bars": [{"label": "Apple", "value": 23}, {"label": "Pear", "value": 45.5}, {"label": "Fig", "value": -4}],
    },
    "line_chart": {
        "kind": "line_chart", "title": "Temperature", "x_labels": ["Jan", "Feb", "Mar", "Apr"],
        "series": [{"name": "Oslo", "values": [1, 3, 6, 10]}, {"name": "Rome", "values": [9, 11, 14, 18], "color": "red"}],
    },
    "pie_chart": {"kind": "pie_chart", "title": "Travel", "slices": [{"label": "Bus", "value": 3}, {"label": "Car", "value": 1}]},
    "table": {"kind": "table", "title": "Scores", "columns": ["Name", "Math"], "rows": [["Ana", 88], ["Ben", 71.5], ["Cy", "?"]]},
    "geometry": {
        "kind": "geometry", "figure": "right_triangle", "sides": [6, 8], "side_labels": ["6", "8", "?"],
        "vertex_names": ["A", "B", "C"],
    },
    "shape_scene": {
        "kind": "shape_scene",
        "shapes": [{"shape": s, "color": c, "x": 0.15 + 0.17 * i, "y": 0.5, "size": 0.12, "label": str(i)}
                   for i, (s, c) in enumerate(zip(SHAPES, ["red", "blue", "green", "yellow", "purple"]))],
    },
}
FIGURES = [
    {"kind": "geometry", "figure": "triangle", "angles": [50, 60, 70], "angle_labels": ["50°", "60°", "?"]},
    {"kind": "geometry", "figure": "triangle", "sides": [5, 6, 7], "side_labels": ["5", "6", "7"]},
    {"kind": "geometry", "figure": "rectangle", "sides": [12, 5], "side_labels": ["12", "5", "?"], "note": "diagonal"},
    {"kind": "geometry", "figure": "circle", "sides": [7], "side_labels": ["d = 14"], "circle_segment": "diameter"},
]


def _image(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return img.convert("RGB")


@pytest.mark.parametrize("kind", list(SAMPLES))
@pytest.mark.parametrize("size", [(640, 480), (64, 64), (333, 901)])
def test_every_kind_renders_a_png_of_its_size(kind: str, size: tuple[int, int]) -> None:
    spec = parse_spec({**SAMPLES[kind], "width": size[0], "height": size[1]})
    png = render(spec)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert _image(png).size == size


@pytest.mark.parametrize("data", FIGURES)
def test_every_figure_renders(data: dict) -> None:
    assert _image(render(parse_spec(data))).size == (640, 480)


def test_extremes_render() -> None:
    bars = BarChart(bars=[{"label": f"Label number {i:02d} is long", "value": i * 1e6} for i in range(40)])
    lines = LineChart(x_labels=[f"x{i}" for i in range(60)], series=[{"name": f"s{j}", "values": [j] * 60} for j in range(12)])
    table = Table(columns=[f"c{j}" for j in range(12)], rows=[[1.25] * 12 for _ in range(30)])
    pie = PieChart(slices=[{"label": f"s{i}", "value": 1 + i} for i in range(16)])
    for spec in (bars, lines, table, pie, BarChart(bars=[{"label": "zero", "value": 0}])):
        assert _image(render(spec)).size == (640, 480)


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_rendering_is_deterministic(kind: str) -> None:
    a, b = parse_spec(SAMPLES[kind]), parse_spec(SAMPLES[kind])
    assert render(a) == render(b)
    assert spec_digest(a) == spec_digest(b)
    assert spec_digest(a) != spec_digest(a.model_copy(update={"title": "other"}))
    # Drawn again larger by the legibility gate, it is the same drawing: the simulator, which knows
    # an image by its stamp, still knows what this one shows.
    bigger = redrawn(a)
    assert bigger is not None and _image(png := render(bigger)).size > _image(render(a)).size
    assert spec_stamp(png) == spec_digest(a)


@pytest.mark.parametrize(
    ("data", "where", "words"),
    [
        ({**SAMPLES["bar_chart"], "width": 100000}, "width", "2048"),
        ({"kind": "bar_chart", "bars": [{"label": "a", "value": 1}] * 10000}, "bars", "at most 40"),
        ({"kind": "table", "columns": ["a", "b"], "rows": [[1, 2], [3]]}, "rows[1]", "2 columns"),
        ({"kind": "bar_chart", "bars": [{"label": "a", "value": float("nan")}]}, "bars[0].value", "finite"),
        ({"kind": "table", "columns": ["a"], "rows": [[float("inf")]]}, "rows[0][0]", "finite"),
        ({"kind": "line_chart", "x_labels": ["a", "b"], "series": [{"name": "s", "values": [1]}]}, "series[0]", "x_labels"),
        ({"kind": "bar_chart", "bars": [{"label": "x" * 41, "value": 1}]}, "bars[0].label", "40 characters"),
        ({"kind": "geometry", "figure": "triangle", "sides": [1, 2, 5]}, "triangle inequality", ""),
        ({"kind": "shape_scene", "shapes": [{"shape": "blob", "color": "red", "x": 0, "y": 0, "size": 0.1}]}, "shape", "circle"),
    ],
)
def test_bounds_are_refused_with_a_clear_line(data: dict, where: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    msg = str(err.value)
    assert "\n" not in msg and where in msg and words in msg, msg


def test_constructors_raise_validation_errors() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 2048"):
        BarChart(width=100000, bars=[{"label": "a", "value": 1}])
    with pytest.raises(ValidationError, match="at most 40"):
        BarChart(bars=[{"label": "a", "value": 1}] * 10000)


def test_specs_have_a_json_schema() -> None:
    from pydantic import TypeAdapter

    from cadsynth.specs import ImageSpec

    schema = TypeAdapter(ImageSpec).json_schema()
    assert {"BarChart", "LineChart", "PieChart", "Table", "GeometryFigure", "ShapeScene"} <= set(schema["$defs"])


# --- the pixels encode the spec --------------------------------------------------------------


def test_bar_heights_are_proportional_to_values() -> None:
    values = [12, 47, 33, 80, 5, 61.5]
    png = render(BarChart(bars=[{"label": f"b{i}", "value": v} for i, v in enumerate(values)], show_values=True))
    img = _image(png)
    blue = PALETTE["blue"]
    w, h = img.size
    px = img.load()
    columns = [x for x in range(w) if any(px[x, y] == blue for y in range(h))]
    runs: list[list[int]] = []
    for x in columns:
        if runs and x == runs[-1][-1] + 1:
            runs[-1].append(x)
        else:
            runs.append([x])
    assert len(runs) == len(values)
    heights = [sum(px[r[len(r) // 2], y] == blue for y in range(h)) for r in runs]
    scale = heights[values.index(max(values))] / max(values)
    for v, got in zip(values, heights):
        assert abs(got - v * scale) <= 2, (v, got, scale)


def _regions(img: Image.Image) -> dict[tuple[int, int, int], list[int]]:
    """Sizes of the connected regions (4-neighbour) of each palette colour."""
    w, h = img.size
    px = img.load()
    palette = set(PALETTE.values())
    seen = [[False] * w for _ in range(h)]
    found: dict[tuple[int, int, int], list[int]] = {}
    for y0 in range(h):
        for x0 in range(w):
            c = px[x0, y0]
            if seen[y0][x0] or c not in palette:
                continue
            size, stack = 0, [(x0, y0)]
            seen[y0][x0] = True
            while stack:
                x, y = stack.pop()
                size += 1
                for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                    if 0 <= nx < w and 0 <= ny < h and not seen[ny][nx] and px[nx, ny] == c:
                        seen[ny][nx] = True
                        stack.append((nx, ny))
            found.setdefault(c, []).append(size)
    return found


@pytest.mark.parametrize("seed", range(3))
def test_shape_scene_regions_match_the_spec(seed: int) -> None:
    rng = random.Random(seed)
    colours = ["red", "blue", "green", "yellow", "purple", "pink"]
    cells = rng.sample(range(20), 12)
    shapes = [
        {"shape": rng.choice(SHAPES), "color": rng.choice(colours), "x": (c % 5 + 0.5) / 5, "y": (c // 5 + 0.45) / 4,
         "size": 0.12, "label": "ABCDEFGHIJKL"[i]}
        for i, c in enumerate(cells)
    ]
    spec = ShapeScene(width=320, height=240, shapes=shapes)
    found = {c: len(sizes) for c, sizes in _regions(_image(render(spec))).items()}
    want = Counter(PALETTE[s["color"]] for s in shapes)
    assert found == dict(want)


def test_pie_slice_areas_match_value_shares() -> None:
    values = [50, 25, 15, 7, 3]
    colours = ["red", "blue", "green", "orange", "purple"]
    spec = PieChart(width=400, height=300, slices=[{"label": c, "value": v, "color": c} for v, c in zip(values, colours)])
    regions = _regions(_image(render(spec)))
    area = {c: max(regions[PALETTE[c]]) for c in colours}  # the slice, not its legend swatch
    # One slice and one swatch per colour; slice edges may leave a stray pixel or two.
    assert all(len([n for n in regions[PALETTE[c]] if n >= 5]) == 2 for c in colours)
    total = sum(area.values())
    for v, c in zip(values, colours):
        assert abs(area[c] / total - v / sum(values)) < 0.01, (c, area[c], total)


def test_geometry_is_drawn_to_scale() -> None:
    from cadsynth.agents.painter.render import FIGURE_FILL

    for legs in ([3, 4], [8, 3], [5, 5]):
        img = _image(render(GeometryFigure(figure="right_triangle", sides=legs)))
        mask = [(x, y) for y in range(0, img.height, 2) for x in range(img.width) if img.getpixel((x, y)) == FIGURE_FILL]
        xs, ys = [p[0] for p in mask], [p[1] for p in mask]
        ratio = (max(xs) - min(xs)) / (max(ys) - min(ys))
        assert abs(ratio - legs[1] / legs[0]) / (legs[1] / legs[0]) < 0.05, (legs, ratio)
    circle = _image(render(GeometryFigure(figure="circle", sides=[3], width=500, height=300)))
    fill = [(x, y) for y in range(circle.height) for x in range(circle.width) if circle.getpixel((x, y)) == FIGURE_FILL]
    width = max(p[0] for p in fill) - min(p[0] for p in fill)
    height = max(p[1] for p in fill) - min(p[1] for p in fill)
    assert abs(width - height) <= 3


# --- the worker processes the graph renders in --------------------------------------------------

WORKER_CHILD = """
import asyncio, time
from cadsynth.agents.painter import workers
from cadsynth.specs import parse_spec

async def main():
    png = await workers.render_async(parse_spec({"kind": "pie_chart", "slices": [{"label": "A", "value": 1}]}))
    print(" ".join(str(p.pid) for p in workers._pool._processes.values()), len(png), flush=True)
    time.sleep(60)  # killed here

if __name__ == "__main__":  # spawned workers import this file too
    asyncio.run(main())
"""


UNGUARDED = """
import asyncio
from cadsynth.agents.painter import workers
from cadsynth.specs import parse_spec

spec = parse_spec({"kind": "pie_chart", "slices": [{"label": "A", "value": 1}]})
print(len(asyncio.run(workers.render_async(spec))), flush=True)
"""


@pytest.mark.slow  # worker processes
def test_the_workers_draw_the_same_bytes_and_a_killed_worker_costs_no_image() -> None:
    specs = [parse_spec(data) for data in SAMPLES.values()]

    async def draw() -> list[bytes]:
        return [await workers.render_async(spec) for spec in specs]

    assert asyncio.run(draw()) == [render(spec) for spec in specs]
    assert workers._pool is not None
    for pid in list(workers._pool._processes):
        os.kill(pid, signal.SIGKILL)
    # The broken pool's image is drawn again by a new pool, as is the next one.
    assert asyncio.run(draw()) == [render(spec) for spec in specs]
    assert workers._pool is not None and all(p.is_alive() for p in workers._pool._processes.values())


KILLED_WORKERS = """
import asyncio, os, signal, sys
from cadsynth.agents.painter import workers
from cadsynth.specs import parse_spec

async def main():
    pie = parse_spec({"kind": "pie_chart", "slices": [{"label": "A", "value": 1}]})
    await workers.render_async(pie)
    pids = list(workers._pool._processes)
    circuit = parse_spec({"kind": "circuit", "volts": 6, "stages": [{"branches": [{"resistors": [{"name": "R1", "ohms": 100}]}]}]})
    drawing = [asyncio.create_task(workers.render_async(circuit)) for _ in range(4)]
    await asyncio.sleep(0.05)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    sizes = [len(png) for png in await asyncio.gather(*drawing)]
    print(min(sizes) > 0, "schemdraw" in sys.modules, "matplotlib" in sys.modules, flush=True)

if __name__ == "__main__":
    asyncio.run(main())
"""


@pytest.mark.slow  # worker processes
def test_images_a_dead_worker_was_drawing_are_drawn_by_new_workers_not_in_the_caller(tmp_path) -> None:
    """A pool whose worker died fails every image it was drawing: they are drawn again by a new
    pool, so the run's own process never loads the renderers (matplotlib, schemdraw, RDKit)."""
    script = tmp_path / "killed.py"
    script.write_text(KILLED_WORKERS)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "False", "False"], out.stdout


@pytest.mark.slow  # worker processes
def test_the_workers_end_when_their_parent_is_killed(tmp_path) -> None:
    script = tmp_path / "child.py"
    script.write_text(WORKER_CHILD)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline().split()  # type: ignore[union-attr]
        pids, png_size = [int(p) for p in line[:-1]], int(line[-1])
        assert pids and png_size > 0
        assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
    finally:
        parent.kill()
        parent.wait()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.slow  # worker processes
def test_a_script_whose_workers_cannot_start_still_paints(tmp_path) -> None:
    script = tmp_path / "unguarded.py"  # no __main__ guard: spawned workers cannot start
    script.write_text(UNGUARDED)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and int(done.stdout.split()[-1]) > 0


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its reaper."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
