"""The run report's plots, per round, drawn by matplotlib as SVG data URIs (the page needs no network).

Figures are built with matplotlib's object API (no pyplot): no global state, no display backend.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

# Outcome colours, the same in the plots and the gallery's badges (report.html).
COLOURS = {"keep": "#2e7d32", "adversarial": "#ef6c00", "discard": "#c62828", "dropped": "#9e9e9e"}


def _data_uri(fig: Any) -> str:
    from matplotlib import rc_context

    buf = io.StringIO()
    # Text stays text (smaller than outlined glyphs); a fixed salt and no date make equal runs give equal files.
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "cadsynth"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue().encode()).decode()


def _figure(title: str, ylabel: str) -> tuple[Any, Any]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.0, 3.0))
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _stacked(ax: Any, rounds: Sequence[int], series: dict[str, Sequence[float]], colours: Mapping[str, Any]) -> None:
    bottom = [0.0] * len(rounds)
    for name, values in series.items():
        ax.bar(rounds, values, bottom=bottom, width=0.9 if len(rounds) < 60 else 1.0, color=colours[name], label=name,
               linewidth=0)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)


def outcomes(rounds: Sequence[dict[str, Any]]) -> str:
    """Problems per round by outcome: kept (everyone or enough agreed), adversarial, discarded, dropped."""
    fig, ax = _figure("Outcomes per round", "problems")
    numbers = [r["round"] for r in rounds]
    _stacked(ax, numbers, {
        "keep": [r["kept"] - r["adversarial"] for r in rounds],
        "adversarial": [r["adversarial"] for r in rounds],
        "discard": [r["discarded_by_judges"] for r in rounds],
        "dropped": [r.get("dropped", 0) for r in rounds],
    }, COLOURS)
    return _data_uri(fig)


def consensus(by_round: dict[int, dict[int, int]]) -> str:
    """The share of each consensus score C per round: how the jury's agreement moved."""
    from matplotlib import colormaps

    fig, ax = _figure("Consensus score C per round (share of judged problems)", "share")
    numbers = sorted(by_round)
    scores = sorted({c for counts in by_round.values() for c in counts})
    totals = {r: max(1, sum(by_round[r].values())) for r in numbers}
    palette = colormaps["RdYlGn"]
    colours = {f"C={c}": palette(i / max(1, len(scores) - 1)) for i, c in enumerate(scores)}
    _stacked(ax, numbers, {f"C={c}": [by_round[r].get(c, 0) / totals[r] for r in numbers] for c in scores}, colours)
    ax.set_ylim(0, 1)
    return _data_uri(fig)


def difficulty(rounds: Sequence[dict[str, Any]], targets: dict[int, float]) -> str:
    """The proposals' mean difficulty per round, and the difficulty the context asked for."""
    fig, ax = _figure("Mean difficulty per round", "difficulty")
    ax.plot([r["round"] for r in rounds], [r["mean_difficulty"] for r in rounds], marker="o", markersize=3,
            label="mean of proposals")
    if targets:
        ax.plot(sorted(targets), [targets[r] for r in sorted(targets)], linestyle="--", label="context's target")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    return _data_uri(fig)


def cost(rounds: Sequence[dict[str, Any]], calls: dict[int, int]) -> str:
    """USD per round as bars, model calls per round as a line on its own axis."""
    fig, ax = _figure("Cost per round", "USD")
    numbers = [r["round"] for r in rounds]
    ax.bar(numbers, [r["cost_usd"] for r in rounds], color="#5c6bc0", width=0.9 if len(numbers) < 60 else 1.0,
           label="USD", linewidth=0)
    if not any(r["cost_usd"] for r in rounds):
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.55, "no priced calls (a simulated or unpriced panel)", transform=ax.transAxes, ha="center",
                color="#555555", fontsize=9)
    twin = ax.twinx()
    twin.plot(numbers, [calls.get(n, 0) for n in numbers], color="#00897b", marker="o", markersize=3, label="model calls")
    twin.set_ylabel("model calls")
    twin.set_ylim(bottom=0)
    twin.spines[["top"]].set_visible(False)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.1, 1.0), frameon=False, fontsize=8)
    return _data_uri(fig)
