"""The procedural world: truths recomputed here from the spec alone, and the strategies behave."""

from __future__ import annotations

import asyncio
import difflib
import io
import json
import math
import random
import re
from collections import Counter
from statistics import mean
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from langchain_core.messages import HumanMessage

from cadsynth.agents.painter.render import render
from cadsynth.agents.panel import Agent, SeedView, image_block
from cadsynth.agents.sim.hazards import Hazards
from cadsynth.agents.sim.models import SimChatModel
from cadsynth.agents.sim.truth import Truth, TruthBook, spec_digest_of
from cadsynth.agents.sim.world import PERCEPTION, REASONING, TEMPLATES, Problem, World
from cadsynth.config import AgentConfig, SimPersona, WorldConfig
from cadsynth.domain import CAPABILITIES, STRATEGIES, Context
from cadsynth.prompts import render_prompt

WORLD = World()
LEVELS = (0.0, 0.3, 0.6, 0.9, 1.0)


def plain(x: float) -> str:
    """Independent of the world's formatter: two decimals at most, no trailing zeros."""
    s = f"{round(x, 2):.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def grab(pattern: str, text: str) -> tuple[str, ...]:
    m = re.search(pattern, text)
    assert m, (pattern, text)
    return m.groups()


def picked(p: Problem) -> str:
    """The option text behind a choice answer."""
    assert p.choices is not None
    return p.choices["ABCD".index(p.truth)]


def num(text: str) -> float:
    return float(re.search(r"-?\d+(\.\d+)?", text).group())  # type: ignore[union-attr]


# --- per-template truth, from the spec and the question only ---------------------------------


def bars(p: Problem) -> dict[str, float]:
    return {b.label: b.value for b in p.spec.bars}


def bar_check(p: Problem) -> str:
    v, q = bars(p), p.question
    t = p.template
    if t == "bar.lookup":
        return plain(v[grab(r"bar for (.+) show\?", q)[0]])
    if t == "bar.which_value":
        (x,) = grab(r"exactly (\S+)\?", q)
        (hit,) = [k for k, val in v.items() if plain(val) == x]
        return hit
    if t == "bar.diff":
        a, b = grab(r"value for (.+) than the value for (.+)\?", q)
        return plain(v[a] - v[b])
    if t == "bar.partner":
        d, b = grab(r"exactly (\S+) more than the value for (.+)\?", q)
        (hit,) = [k for k, val in v.items() if abs(val - (v[b] + float(d))) < 1e-6]
        return hit
    if t == "bar.sum":
        names = re.split(r", | and ", grab(r"combined value of (.+)\?", q)[0])
        return plain(sum(v[n] for n in names))
    if t == "bar.argmax":
        order = sorted(v, key=lambda k: -v[k])
        want = {"tallest": order[0], "shortest": order[-1], "second tallest": order[1]}[grab(r"has the (.+) bar", q)[0]]
        assert picked(p) == want
        return p.truth
    if t == "bar.count_above":
        thr = float(grab(r"greater than (\S+)\?", q)[0])
        return str(sum(val > thr for val in v.values()))
    if t == "bar.threshold":
        k = int(grab(r"Exactly (\d+) bars", q)[0])
        good = [i for i, o in enumerate(p.choices or []) if sum(val > float(o) for val in v.values()) == k]
        assert len(good) == 1
        return "ABCD"[good[0]]
    if t == "bar.color_diff":
        a, b = grab(r"value of the (\w+) bar minus the value of the (\w+) bar", q)
        by_colour = {bar.color: bar.value for bar in p.spec.bars}
        return plain(by_colour[a] - by_colour[b])
    raise AssertionError(t)


def line_check(p: Problem) -> str:
    spec, q, t = p.spec, p.question, p.template
    series = {s.name: s.values for s in spec.series}
    xs = spec.x_labels
    if t == "line.value_at":
        s, x = grab(r"value for (.+) in (.+)\?", q)
        return plain(series[s][xs.index(x)])
    if t == "line.when_value":
        s, val = grab(r"value for (.+) exactly (\S+)\?", q)
        (hit,) = [x for x, v in zip(xs, series[s]) if plain(v) == val]
        return hit
    if t == "line.change":
        a, b = grab(r"from (.+) to (.+)\? Give", q)
        (vs,) = series.values()
        return plain(vs[xs.index(b)] - vs[xs.index(a)])
    if t == "line.argmax":
        (vs,) = series.values()
        best = max(vs) if "highest" in q else min(vs)
        assert vs.count(best) == 1
        return xs[vs.index(best)]
    if t == "line.above_count":
        a, b = grab(r"was (.+) higher than (.+)\?", q)
        assert all(abs(x - y) >= 3 for x, y in zip(series[a], series[b]))  # visibly apart
        return str(sum(x > y for x, y in zip(series[a], series[b])))
    raise AssertionError(t)


def shares(p: Problem) -> dict[str, float]:
    total = sum(s.value for s in p.spec.slices)
    return {s.label: 100 * s.value / total for s in p.spec.slices}


def pie_check(p: Problem) -> str:
    sh, q, t = shares(p), p.question, p.template
    if t == "pie.percent":
        return plain(sh[grab(r"total is (.+)\? Answer", q)[0]])
    if t == "pie.which_share":
        pct = float(grab(r"exactly (\S+)% of", q)[0])
        (hit,) = [k for k, v in sh.items() if abs(v - pct) < 0.05]
        assert picked(p) == hit
        return p.truth
    if t == "pie.largest":
        hit = (max if "largest" in q else min)(sh, key=lambda k: sh[k])
        assert picked(p) == hit
        return p.truth
    if t == "pie.amount":
        total, label = grab(r"shares out (\d+) \w+\. How many \w+ are in (.+)\?", q)
        return plain(int(total) * sh[label] / 100)
    if t == "pie.total":
        label, part = grab(r"^(.+) stands for (\d+) ", q)
        return plain(int(part) * 100 / sh[label])
    raise AssertionError(t)


def table_check(p: Problem) -> str:
    spec, q, t = p.spec, p.question, p.template
    cols = spec.columns
    rows = {r[0]: dict(zip(cols, r)) for r in spec.rows}
    numeric = [c for c in cols[1:] if c != "Total"]
    if t == "table.lookup":
        c, r = grab(r"what is the (.+) value for (.+)\?", q)
        return plain(rows[r][c])
    if t == "table.which_row":
        c, v = grab(r"has a (.+) value of (\S+)\?", q)
        (hit,) = [k for k, r in rows.items() if plain(r[c]) == v]
        return hit
    if t == "table.row_sum":
        r = grab(r"numbers in the (.+) row", q)[0]
        return plain(sum(rows[r][c] for c in numeric))
    if t == "table.missing":
        (row,) = [r for r in rows.values() if "?" in r.values()]
        return plain(row["Total"] - sum(row[c] for c in numeric if row[c] != "?"))
    if t == "table.count_cond":
        c, thr = grab(r"have a (.+) value above (\S+)\?", q)
        return str(sum(r[c] > float(thr) for r in rows.values()))
    if t == "table.argmax":
        word, c = grab(r"has the (highest|lowest) (.+) value\?", q)
        return (max if word == "highest" else min)(rows, key=lambda k: rows[k][c])
    raise AssertionError(t)


def geo_check(p: Problem) -> str:
    spec, q, t = p.spec, p.question, p.template
    labels = [num(x) if any(ch.isdigit() for ch in x) else None for x in spec.side_labels]
    rounding = (lambda x: round(x, 1)) if "one decimal" in q else (lambda x: x)
    if t == "geo.hypotenuse":
        a, b, _ = labels
        return plain(rounding(math.hypot(a, b)))
    if t == "geo.leg":
        a, _, c = labels
        return plain(rounding(math.sqrt(c * c - a * a)))
    if t == "geo.third_angle":
        known = [num(x) for x in spec.angle_labels if x != "?"]
        return plain(180 - sum(known))
    if t == "geo.isosceles":
        assert spec.side_labels[0] == spec.side_labels[2]
        return plain((180 - num(spec.angle_labels[0])) / 2)
    if t == "geo.rect_area":
        w, h = labels[:2]
        return plain(w * h if "area" in q else 2 * (w + h))
    if t == "geo.rect_side":
        w = labels[0]
        given = num(spec.note)
        return plain(given / w if spec.note.startswith("Area") else given / 2 - w)
    if t == "geo.circle_area":
        r = num(spec.side_labels[0]) / (2 if spec.side_labels[0].startswith("d") else 1)
        return plain(3.14 * r * r if "area" in q else 2 * 3.14 * r)
    if t == "geo.circle_radius":
        given = num(spec.note)
        r = math.sqrt(given / 3.14) if spec.note.startswith("Area") else given / (2 * 3.14)
        assert abs(r - round(r)) < 1e-6
        return plain(r)
    raise AssertionError(t)


AREA = {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5, "hexagon": 3 * math.sqrt(3) / 8, "star": 0.3}


def shape_check(p: Problem) -> str:
    shapes, q, t = p.spec.shapes, p.question, p.template
    if t == "shape.count_color":
        c = grab(r"How many (\w+) shapes", q)[0]
        return str(sum(s.color == c for s in shapes))
    if t == "shape.count_shape":
        kind = grab(r"How many (\w+)s are", q)[0]
        return str(sum(s.shape == kind for s in shapes))
    if t == "shape.count_color_shape":
        c, kind = grab(r"How many (\w+) (\w+)s are", q)
        return str(sum(s.color == c and s.shape == kind for s in shapes))
    if t == "shape.which_count":
        n = int(grab(r"exactly (\d+) shapes", q)[0])
        counts = Counter(s.color for s in shapes)
        assert [counts[o] == n for o in p.choices or []].count(True) == 1
        assert counts[picked(p)] == n
        return p.truth
    anchor = next(s for s in shapes if s.label == grab(r"labelled (\w+)\?", q)[0]) if "labelled" in q else None
    if t == "shape.left_of":
        row = [s for s in shapes if abs(s.y - anchor.y) < 0.08 and s.x < anchor.x]
        return max(row, key=lambda s: s.x).color
    if t == "shape.above":
        col = [s for s in shapes if abs(s.x - anchor.x) < 0.05 and s.y < anchor.y]
        return max(col, key=lambda s: s.y).shape
    if t == "shape.largest_label":
        by_area = sorted(shapes, key=lambda s: -AREA[s.shape] * s.size**2)
        assert AREA[by_area[0].shape] * by_area[0].size ** 2 > 1.3 * AREA[by_area[1].shape] * by_area[1].size ** 2
        return by_area[0].label
    raise AssertionError(t)


def vega_lite_check(p: Problem) -> str:
    """From the document's inline data, read as JSON."""
    import json

    rows = json.loads(p.spec.vega_lite)["data"]["values"]
    q, t = p.question, p.template
    if t == "vl.bar_lookup":
        label = grab(r"bar for (.+)\?", q)[0]
        return plain(next(r["value"] for r in rows if r["label"] == label))
    if t == "vl.which_bar":
        v = grab(r"the value (\S+) printed", q)[0]
        (hit,) = [r["label"] for r in rows if plain(r["value"]) == v]
        return hit
    if t == "vl.bar_sum":
        return plain(round(sum(r["value"] for r in rows), 2))
    if t == "vl.scatter_argmax":
        return max(rows, key=lambda r: r["y"])["name"]
    raise AssertionError(t)


def svg_check(p: Problem) -> str:
    """From the SVG's elements, parsed as XML: shapes by tag and fill, texts in document order."""
    import xml.etree.ElementTree as ET

    from cadsynth.specs import PALETTE

    root = ET.fromstring(p.spec.svg)
    ns = "{http://www.w3.org/2000/svg}"
    q, t = p.question, p.template
    if t == "svg.count":
        color, shape = grab(r"How many (\w+) (\w+)s are there", q)
        fill = "#{:02x}{:02x}{:02x}".format(*PALETTE[color])
        tag = {"circle": "circle", "square": "rect", "triangle": "polygon"}[shape]
        return str(sum(1 for el in root.iter(ns + tag) if el.get("fill") == fill))
    texts = [el.text or "" for el in root.iter(ns + "text")][1:]  # the title first, then name, number per box
    pairs = dict(zip(texts[::2], texts[1::2]))
    if t == "svg.tag_lookup":
        return pairs[grab(r"box labelled (.+)\?", q)[0]]
    if t == "svg.which_tag":
        v = grab(r"the number (\d+) written", q)[0]
        (hit,) = [k for k, x in pairs.items() if x == v]
        return hit
    raise AssertionError(t)


CHECKS: dict[str, Callable[[Problem], str]] = {
    "bar_chart": bar_check, "line_chart": line_check, "pie_chart": pie_check,
    "table": table_check, "geometry": geo_check, "shape_scene": shape_check,
    "vega_lite": vega_lite_check, "svg": svg_check,
}


# The science domains' templates are checked in tests/test_domains.py.
@pytest.mark.parametrize("template", sorted(t for t in TEMPLATES if TEMPLATES[t].kind in CHECKS))
def test_truth_matches_an_independent_computation(template: str) -> None:
    for seed in range(24):
        p = WORLD.generate(random.Random(seed), template, LEVELS[seed % len(LEVELS)])
        assert p.template == template and p.kind == p.spec.kind
        assert CHECKS[p.kind](p) == p.truth, (seed, p.question, p.truth)
        _well_formed(p)


def _well_formed(p: Problem) -> None:
    assert len(p.distractors) >= 3
    assert len(set(p.distractors)) == len(p.distractors)
    assert p.truth not in p.distractors
    assert 1 <= len(p.capabilities) <= 3 and len(set(p.capabilities)) == len(p.capabilities)
    assert all(c in CAPABILITIES for c in p.capabilities)
    assert 0.0 <= p.difficulty <= 1.0
    assert p.question and p.solution and p.visual_prompt
    if p.answer_type == "choice":
        assert p.choices is not None and len(p.choices) == 4 and len(set(p.choices)) == 4
        assert p.truth in "ABCD" and set(p.distractors) <= set("ABCD")
    else:
        assert p.choices is None
    if p.answer_type == "integer":
        assert re.fullmatch(r"-?\d+", p.truth)
    if p.answer_type == "number":
        assert re.fullmatch(r"-?\d+(\.\d+)?", p.truth)


def test_catalogue_covers_every_kind() -> None:
    kinds = Counter(t.kind for t in TEMPLATES.values())
    from cadsynth.specs import KINDS

    assert set(kinds) == KINDS  # every kind a spec can be, the untrusted documents too
    assert min(kinds.values()) >= 3 and len(TEMPLATES) >= 20
    for t in TEMPLATES.values():
        assert t.inverse and all(i in TEMPLATES for i in t.inverse)


def test_difficulty_spans_the_range() -> None:
    ds = [WORLD.generate(random.Random(s), t, lv).difficulty for t in TEMPLATES for s, lv in enumerate((0.0, 1.0))]
    assert min(ds) < 0.15 and max(ds) > 0.85


def test_difficulty_follows_the_target() -> None:
    def mean_at(target: float) -> float:
        out = []
        for s in range(40):
            rng = random.Random(s)
            seed = WORLD.seed(rng) if s % 2 else None
            out.append(WORLD.evolve(rng, seed, STRATEGIES[s % 4], ["counting", "color"], target).difficulty)
        return mean(out)

    low, mid, high = mean_at(0.1), mean_at(0.5), mean_at(0.9)
    assert low < mid < high and high - low > 0.3


def test_same_rng_seed_gives_the_same_problem() -> None:
    for s in range(10):
        a, b = random.Random(s), random.Random(s)
        assert WORLD.seed(a) == WORLD.seed(b)
        assert WORLD.evolve(a, None, STRATEGIES[s % 4], ["color"], 0.6) == WORLD.evolve(b, None, STRATEGIES[s % 4], ["color"], 0.6)
        assert render(WORLD.seed(a).spec) == render(WORLD.seed(b).spec)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_changes_the_problem_its_way(strategy: str) -> None:
    for s in range(40):
        rng = random.Random(s)
        seed = WORLD.seed(rng)
        p = WORLD.evolve(rng, seed, strategy, list(seed.capabilities), 0.5)  # type: ignore[arg-type]
        _well_formed(p)
        if strategy == "numerical_variation":
            assert p.template == seed.template and p.spec != seed.spec
        elif strategy == "logic_reversion":
            assert p.template in TEMPLATES[seed.template].inverse and p.template != seed.template
        elif strategy == "auxiliary_extension":
            assert p.kind == seed.kind
            assert len(p.capabilities) > len(seed.capabilities) or p.difficulty >= seed.difficulty
        elif strategy == "fine_grained_perception":
            assert p.kind == seed.kind and set(p.capabilities) & PERCEPTION
        elif strategy == "cognitive_reasoning":
            # More reasoning: another problem on the same image kind, richer or harder than the seed.
            assert p.kind == seed.kind and p.template != seed.template
            assert len(p.capabilities) > len(seed.capabilities) or p.difficulty >= seed.difficulty
        elif strategy == "interaction":
            # The same problem in the other answer format (unless it asks about its own options).
            assert p.template == seed.template
            assert (p.answer_type == "choice") != (seed.answer_type == "choice") or "of these" in p.question
        else:
            assert p.kind != seed.kind


def test_requested_capabilities_are_honoured() -> None:
    rng = random.Random(7)
    for caps in (["color", "shape", "counting"], ["geometric_reasoning"], ["counting", "numeric_reasoning"]):
        got = [WORLD.evolve(rng, None, "numerical_variation", caps, 0.5).capabilities for _ in range(10)]  # type: ignore[arg-type]
        assert mean(len(set(g) & set(caps)) / len(caps) for g in got) >= 0.8
        assert Counter(len(g) for g in got).most_common(1)[0][0] == len(caps)


def test_specs_render() -> None:
    for i, t in enumerate(sorted(TEMPLATES)):
        p = WORLD.generate(random.Random(i), t, 0.8)
        assert render(p.spec).startswith(b"\x89PNG")


# --- the harder world: its failure modes at their configured rates ------------------------------


class _Notes:
    """Notes kept in memory: the store the simulated models of one test share."""

    def __init__(self) -> None:
        self.kept: dict[tuple[str, str], dict] = {}

    async def get_many(self, book: str, keys: object) -> dict[str, dict]:
        return {k: self.kept[(book, k)] for k in keys if (book, k) in self.kept}  # type: ignore[attr-defined]

    async def put(self, book: str, values: dict[str, dict]) -> None:
        for k, v in values.items():
            self.kept.setdefault((book, k), v)


def _proposals(world: WorldConfig, n: int, seed: int = 0) -> list:
    """What a simulated proposer writes over n calls, asked the way the panel asks (its prompt,
    through the agent), each with the truth the simulator noted for it (as `sim`)."""
    persona = SimPersona(flaw_rate=0.0)
    model = SimChatModel(agent="sim-a", persona=persona, seed=seed, world_config=world)
    agent = Agent(AgentConfig(name="sim-a", provider="sim", model="sim", roles=["proposer"], sim=persona), model)
    context = Context(difficulty_target=0.4)

    async def one(i: int) -> SimpleNamespace:
        key = f"r{i // 8}/sim-a/{i % 8}"
        seed_view = SeedView(id=f"none:{key}", text="(no seed: write a problem of your own)")
        draft = (await agent.propose(key, context, seed_view, STRATEGIES[i % len(STRATEGIES)], [CAPABILITIES[i % len(CAPABILITIES)]])).value
        truth = await model.book.about(draft.question, spec_digest_of(draft.image_spec), draft.choices)
        assert truth is not None
        return SimpleNamespace(**{**dict(draft), "sim": truth})

    async def every() -> list[SimpleNamespace]:
        return [await one(i) for i in range(n)]

    return asyncio.run(every())


def test_a_clean_world_has_no_failure_modes() -> None:
    for p in _proposals(WorldConfig.clean(), 120):
        assert not p.sim.text_answerable and p.sim.conflict is None and p.sim.duplicate_of is None and p.sim.blind_spot is None


def test_text_answerable_questions_state_their_data_at_the_configured_rate() -> None:
    drafts = _proposals(WorldConfig.clean().model_copy(update={"text_answerable_rate": 0.2}), 400)
    given = [p for p in drafts if p.sim.text_answerable]
    assert 0.15 <= len(given) / len(drafts) <= 0.25
    for p in given:
        # The question itself carries the image's description: every value a blind reader needs.
        assert p.visual_prompt in p.question
    assert not any(p.visual_prompt in p.question for p in drafts if not p.sim.text_answerable)


def test_conflicting_images_lack_what_the_question_names_at_about_the_configured_rate() -> None:
    drafts = _proposals(WorldConfig.clean().model_copy(update={"conflict_rate": 0.2}), 400)
    conflicts = [p for p in drafts if p.sim.conflict]
    # Every image that names what its question asks about can be broken; a few (e.g. "the largest
    # shape") cannot, so the rate is a little under the configured one, never over it.
    assert 0.12 <= len(conflicts) / len(drafts) <= 0.25
    assert {p.sim.conflict for p in conflicts} == {"missing_label", "legend_mismatch", "changed_value"}
    hazards = Hazards(WorldConfig(conflict_rate=1.0), WORLD)
    for s in range(60):
        rng = random.Random(s)
        p = WORLD.seed(rng)
        broken = hazards.conflict(rng, p)
        if broken is None:
            continue
        q, how = broken
        assert q.question == p.question and q.truth == p.truth and q.spec != p.spec
        render(q.spec)  # still drawable
        if how == "missing_label":
            before, after = _texts(p.spec), _texts(q.spec)
            # Something the question names was in the image and is gone from it (or every label is).
            named = {t for t in before if re.search(rf"\b{re.escape(t.lower())}s?\b", p.question.lower())}
            assert named - after or "label" in p.question, (p.question, before, after)


def _texts(spec: Any) -> set[str]:
    """The texts a spec holds; for a document kind (a Vega-Lite or SVG string), the texts it prints."""
    if spec.kind in ("vega_lite", "svg"):
        from cadsynth.graphs.legibility import printed_texts

        return set(printed_texts(spec))
    return _strings(spec.model_dump(mode="json"))


def _strings(node: object) -> set[str]:
    if isinstance(node, dict):
        return {t for v in node.values() for t in _strings(v)}
    if isinstance(node, list):
        return {t for v in node for t in _strings(v)}
    return {node} if isinstance(node, str) and len(node) > 1 else set()


def test_near_duplicates_converge_within_and_across_lanes_and_look_alike() -> None:
    world = WorldConfig.clean().model_copy(update={"duplicate_rate": 0.2})
    lane_a, lane_b = _proposals(world, 300, seed=1), _proposals(world, 300, seed=2)  # two lanes' seeds
    dups_a = [p for p in lane_a if p.sim.duplicate_of]
    assert 0.14 <= len(dups_a) / len(lane_a) <= 0.26
    keys_a, keys_b = Counter(p.sim.duplicate_of for p in dups_a), Counter(p.sim.duplicate_of for p in lane_b if p.sim.duplicate_of)
    assert max(keys_a.values()) >= 3 and set(keys_a) & set(keys_b)  # within a lane and across lanes
    same = [p for p in [*lane_a, *lane_b] if p.sim.duplicate_of == max(keys_a, key=keys_a.__getitem__)]
    first = np.asarray(Image.open(io.BytesIO(render(same[0].image_spec))).convert("L"), dtype=float)
    for p in same[1:]:
        assert difflib.SequenceMatcher(None, p.question, same[0].question).ratio() > 0.8
        pixels = np.asarray(Image.open(io.BytesIO(render(p.image_spec))).convert("L"), dtype=float)
        assert pixels.shape == first.shape and np.mean(np.abs(pixels - first)) < 2.0  # near-identical images
        assert p.reference_answer == same[0].reference_answer


def test_blind_spots_make_most_judges_agree_on_a_wrong_reference() -> None:
    world = WorldConfig.clean().model_copy(update={"blind_spot_share": 0.3, "blind_spot_strength": 0.7})
    hazards = Hazards(world, WORLD)
    spotted = [t for t in TEMPLATES if hazards.blind_spot(WORLD.generate(random.Random(0), t, 0.5))]
    assert 0.12 <= len(spotted) / len(TEMPLATES) <= 0.5
    notes = _Notes()
    judges = [SimChatModel(agent=f"judge-{k}", persona=SimPersona(skill=1.0), world_config=world, notes=notes) for k in range(4)]
    book = TruthBook(world, notes)
    scores = []
    for s in range(60):
        p = WORLD.generate(random.Random(s), spotted[s % len(spotted)], 0.5)
        image = render(p.spec)
        truth = Truth(truth=p.truth, distractors=p.distractors, difficulty=p.difficulty, capabilities=list(p.capabilities),
                      template=p.template, kind=p.kind, blind_spot=p.distractors[0])
        asyncio.run(book.write(p.question, spec_digest_of(p.spec) or "", truth))
        prompt = render_prompt("judge", question=p.question, answer_type=p.answer_type, choices="")
        message = HumanMessage(content=[{"type": "text", "text": prompt}, image_block(image)])  # type: ignore[list-item]
        answers = [asyncio.run(j.answer([message])).answer for j in judges]  # type: ignore[attr-defined]
        scores.append(sum(a == p.distractors[0] for a in answers))  # C for a reference that is the shared mistake
    assert 0.55 <= mean(scores) / 4 <= 0.85
    assert min(scores) >= 0 and scores.count(4) >= 5 and sum(c >= 1 for c in scores) >= 50
