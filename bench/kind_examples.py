"""One example image per image kind, rendered by the painter from a simulated-world problem, for
the README: writes docs/kinds/<kind>.png and prints the README's table rows (kind, image, question).

Usage: python bench/kind_examples.py [--out docs/kinds]
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

from cads_process import REPO, reexec_with_cadsynth

# kind: (template, seed): a problem that shows what the kind draws.
EXAMPLES = {
    "bar_chart": ("bar.diff", 1), "line_chart": ("line.value_at", 2), "pie_chart": ("pie.percent", 1),
    "table": ("table.row_sum", 1), "geometry": ("geo.hypotenuse", 1), "shape_scene": ("shape.count_color", 1),
    "molecule": ("chem.rings", 7), "circuit": ("circuit.branch_current", 3), "function_plot": ("plot.intersection", 1),
    "punnett_square": ("punnett.phenotype", 5), "map": ("map.travel_time", 2),
}
SIZE = (480, 360)  # small files; every kind scales its text to the canvas


def main() -> None:
    from PIL import Image, PngImagePlugin

    from cadsynth.agents.painter.render import SPEC_STAMP, render, spec_digest
    from cadsynth.agents.sim.world import World

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "kinds")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    world = World()
    for kind, (template, seed) in EXAMPLES.items():
        problem = world.generate(random.Random(seed), template, 0.5)
        spec = problem.spec.model_copy(update={"width": SIZE[0], "height": SIZE[1]})
        path = args.out / f"{kind}.png"
        # Re-encoded with a 64-colour palette (smaller files, the same picture to the eye), still stamped.
        stamp = PngImagePlugin.PngInfo()
        stamp.add_text(SPEC_STAMP, spec_digest(spec))
        Image.open(io.BytesIO(render(spec))).quantize(64).save(path, optimize=True, pnginfo=stamp)
        question = problem.question.replace("|", "/")
        print(f"| `{kind}` | ![{kind}](docs/kinds/{kind}.png) | {question} (answer: {problem.truth}) |")


if __name__ == "__main__":
    reexec_with_cadsynth()
    main()
