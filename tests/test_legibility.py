"""The legibility gate with its real OCR model: Debian's Tesseract reads every image here (no stand-in)."""

from __future__ import annotations

import base64
import json
import random
import urllib.request
from pathlib import Path

import pytest
import yaml

from cadsynth.agents import reader
from cadsynth.agents.painter.render import render
from cadsynth.agents.sim.world import World
from cadsynth.fakes import FakeOpenAI
from cadsynth.fakes.images import garbled
from cadsynth.fakes.panelist import Panelist
from cadsynth.graphs.legibility import Text, named_in, printed_texts, reading, wanted
from cadsynth.specs import BarChart, parse_spec
from tests.helpers import cads, records, stats

pytestmark = pytest.mark.skipif(not reader.available(), reason="tesseract-ocr is not installed (.ci/run installs it)")
WORLD = World()


def test_numbers_are_found_in_any_of_their_formats_and_words_despite_one_slip() -> None:
    seen = Text("Total 1,250 units\n12.50 kg  25% share  Banana 4cm\nMangp")
    assert seen.has("1250") and seen.has("12.5") and seen.has("25%") and seen.has("25")
    assert seen.has("4 cm")  # its space lost
    assert seen.has("Mango")  # one letter misread in a word of four or more
    assert not seen.has("125") and not seen.has("13") and not seen.has("Kiwi") and not seen.has("Mangos and pears")


def test_what_the_question_names_is_what_must_be_read() -> None:
    assert named_in("What value does the bar for Apple show?", "Apple")
    assert named_in("Which bar shows exactly 12.5?", "12.5")
    assert not named_in("Which bar shows exactly 12.5?", "12")
    assert not named_in("What is the label of the largest shape?", "A")
    assert named_in("Which shape is left of the one labelled A?", "A") and not named_in("Is a shape here?", "A")


@pytest.mark.parametrize("template", ["bar.lookup", "table.lookup", "pie.percent", "vl.bar_lookup", "svg.tag_lookup", "geo.hypotenuse"])
def test_the_reader_reads_back_what_a_renderer_printed(template: str) -> None:
    problem = WORLD.generate(random.Random(11), template, 0.4)
    result = reading(reader.read(render(problem.spec)), problem.spec, problem.question)
    assert result.named or template.startswith("geo."), result
    assert result.legible, result.missing


@pytest.mark.parametrize(("template", "seed"), [("map.distance", 12), ("map.bearing", 11), ("map.bearing", 14),
                                              ("map.which_distance", 11), ("circuit.branch_current", 12)])
def test_place_names_and_resistor_names_are_read_back(template: str, seed: int) -> None:
    # Each was illegible before: a place's dot read as its name's first letter ("4Qslo"), "RS" read for R5.
    problem = WORLD.generate(random.Random(seed), template, 0.4)
    result = reading(reader.read(render(problem.spec)), problem.spec, problem.question)
    assert result.named and result.legible, result.missing


@pytest.mark.parametrize(("template", "seed"), [("plot.which_curve", 3), ("plot.intersection", 8), ("plot.extremum", 5)])
def test_a_function_plots_curve_and_axis_names_are_read_back(template: str, seed: int) -> None:
    # Each was illegible before: the legend's "f" read as "t" when cut out as bare ink, and the
    # turned axis name "y" read as "a)"; now a short axis name stands upright.
    problem = WORLD.generate(random.Random(seed), template, 0.5)
    printed = printed_texts(problem.spec)
    assert "f" in printed and "y" in printed
    seen = Text(reader.read(render(problem.spec)))
    assert [t for t in printed if not seen.has(t)] == []


def test_a_legend_swatch_read_as_a_dash_leaves_its_letter() -> None:
    assert Text("—f\n— Pp\n-_-g").has("f") and Text("— Pp").has("p") and Text("-_-g").has("g")
    assert not Text("—fg").has("f") and not Text("f(x) = 2").has("f")


def test_a_name_of_letters_and_digits_is_found_despite_the_readers_digit_slips() -> None:
    seen = Text("Rl  RS  R7  RO\nOslo")
    assert seen.has("R1") and seen.has("R5") and seen.has("R7") and seen.has("R0")
    assert not seen.has("R2") and not seen.has("R9") and not seen.has("Q1")
    assert not Text("0slo").has("Lima")  # words without digits keep the plain rule


def test_an_image_whose_named_label_is_drawn_wrong_is_illegible() -> None:
    spec = BarChart(title="Fruit sold", bars=[{"label": "Apple", "value": 12}, {"label": "Cherry", "value": 30}, {"label": "Mango", "value": 21}])
    question = "What value does the bar for Cherry show?"
    assert reading(reader.read(render(spec)), spec, question).legible
    drawn = spec.model_copy(update={"bars": [spec.bars[0], spec.bars[1].model_copy(update={"label": "Chxrrq"}), spec.bars[2]]})
    result = reading(reader.read(render(drawn)), spec, question)
    assert not result.legible and result.missing == ("Cherry",)


def _paint(server: FakeOpenAI, prompt: str) -> bytes:
    body = json.dumps({"model": "gpt-image-1", "prompt": prompt, "size": "1024x1024"}).encode()
    request = urllib.request.Request(
        f"{server.base_url}/images/generations", body,
        {"Content-Type": "application/json", "Authorization": "Bearer sk-legible"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return base64.b64decode(json.load(answer)["data"][0]["b64_json"])


def test_the_gate_catches_a_painter_that_garbles_labels() -> None:
    """The fake image model writes the prompt on its image; with garble_labels=1 every label is
    drawn wrong. The gate passes the clean image and catches the garbled one."""
    problem = WORLD.generate(random.Random(4), "bar.lookup", 0.3)
    with FakeOpenAI(Panelist(), api_key="sk-legible") as server:
        server.lettering = True
        clean = _paint(server, problem.visual_prompt)
        server.garble_labels = 1.0
        assert garbled(problem.visual_prompt, 1.0)
        bad = _paint(server, problem.visual_prompt)
    assert reading(reader.read(clean), problem.spec, problem.question, painted=True).legible
    caught = reading(reader.read(bad), problem.spec, problem.question, painted=True)
    assert not caught.legible and caught.missing


def test_lone_letters_are_read_and_a_named_one_is_asked_for() -> None:
    """Shape names under shapes: Tesseract drops a lone glyph on a page, the reader's third look
    (the lone letters set one a line) reads them."""
    problem = WORLD.generate(random.Random(6), "shape.left_of", 0.6)
    letters = [s.label for s in problem.spec.shapes if s.label]
    assert letters and printed_texts(problem.spec) == letters
    seen = Text(reader.read(render(problem.spec)))
    assert sum(seen.has(t) for t in letters) >= len(letters) - 1
    named, is_named = wanted(problem.spec, problem.question)
    assert is_named and len(named) == 1 and named[0] in letters


@pytest.mark.slow  # runs `cads run` twice
def test_a_run_drops_what_its_painter_garbles_as_illegible_after_one_more_drawing(tmp_path: Path) -> None:
    key = "sk-cads-legible"
    config = yaml.safe_load(Path(__file__).parent.parent.joinpath("cadsynth", "default.yaml").read_text())
    config.update(rounds=1, target=1000, seed=3, proposals_per_agent=1, paint="model", world={"text_answerable_rate": 0, "conflict_rate": 0, "duplicate_rate": 0, "blind_spot_share": 0})
    config["gates"] = {"legibility": True}
    config["panel"] = [a for a in config["panel"] if "painter" not in a.get("roles", [])] + [
        {"name": "artist", "provider": "openai", "model": "gpt-image-1", "roles": ["painter"], "api_key_env": "CADS_LEGIBLE_KEY"}
    ]
    outcomes = {}
    for share in (0.0, 1.0):
        with FakeOpenAI(Panelist(), api_key=key) as server:
            server.lettering, server.garble_labels = True, share
            config["panel"][-1]["base_url"] = server.base_url
            run = f"garble{int(share * 100)}"
            (tmp_path / f"{run}.yaml").write_text(yaml.safe_dump(config))
            cads("run", f"{run}.yaml", "--run-id", run, cwd=tmp_path, env={"CADS_LEGIBLE_KEY": key})
            paintings = sum(1 for r in server.requests if "images" in r.path)
        s = stats(run, tmp_path)
        reasons = {v["proposal"]: v.get("reason") for v in records(tmp_path, "cads_consensus", f"run = '{run}'")}
        proposals = records(tmp_path, "cads_proposals", f"run = '{run}'")
        # A problem whose image prints no text the reader can be asked for (a scene of unlabelled
        # shapes) has nothing to garble: the gate passes it.
        checked = {p["id"] for p in proposals if wanted(parse_spec(p["image_spec"]), p["question"], painted=True)[0]}
        outcomes[share] = (s, reasons, checked, paintings)
    clean, garbled_run = outcomes[0.0], outcomes[1.0]
    assert clean[0]["proposals"] > 0 and "illegible" not in clean[1].values()
    s, reasons, checked, paintings = garbled_run
    assert checked and all(reasons[p] == "illegible" for p in checked)
    assert all(reasons[p] != "illegible" for p in reasons.keys() - checked)
    # Each garbled image was drawn once more before it was dropped: two paintings for those.
    assert paintings == s["proposals"] + len(checked)
    assert s["gates"]["legibility"]["removed"] == len(checked)
