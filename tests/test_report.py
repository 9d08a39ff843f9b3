"""`cads report`: the page opened in headless Chromium (Debian's, driven by Playwright), as a person sees it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import cads, stats

CHROMIUM = Path("/usr/bin/chromium")
PAGE_SIZE = 24  # cadsynth.run_report.PAGE_SIZE, as the page should show it


@pytest.fixture(scope="module")
def report(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    cads("report", "small", "--out", str(out), "--db", f"sqlite:///{small_run / 'cads.db'}",
         "--data", str(small_run / "cads-data"), cwd=out.parent)
    return out


@pytest.fixture(scope="module")
def facts(small_run: Path) -> dict:
    return stats("small", small_run)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):  # .ci/run installs it: its absence there is a failure, not a skip
            pytest.fail(f"{CHROMIUM} is missing; apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing; apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, report: Path):
    """The report, opened; any request other than the file itself, and any script error, fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    opened.on("request", lambda r: requests.append(r.url))
    opened.on("pageerror", lambda e: errors.append(str(e)))
    opened.goto(report.as_uri())
    yield opened
    context.close()
    assert [r for r in requests if not r.startswith(("file:", "data:"))] == [], "the page reached the network"
    assert errors == []


def _cards(page) -> list[tuple[str, str, str]]:
    return page.eval_on_selector_all("#cards .card", "cards => cards.map(c => [c.title, c.dataset.outcome, c.dataset.lane])")


def _shown(page) -> str:
    return page.inner_text("#shown")


@pytest.mark.slow  # a browser
def test_the_page_draws_summary_plots_and_gallery(page, facts: dict, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000  # a page of charts and thumbnails, not a blank one
    plots = page.eval_on_selector_all("#plots img", "imgs => imgs.map(i => [i.naturalWidth, i.getBoundingClientRect().height])")
    assert len(plots) == 4 and all(width > 200 and height > 100 for width, height in plots)
    thumbs = page.eval_on_selector_all("#cards img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert len(thumbs) == PAGE_SIZE and all(thumbs)
    summary = page.inner_text("#summary")
    assert f"kept (C ≥ 1)\t{facts['kept']}" in summary
    # Simulated runs say how right the kept data truly is, and say it is simulated.
    assert f"kept samples truly correct (simulated)\t{100 * facts['truth']['kept_correct_rate']:.1f}%" in summary
    assert page.is_visible("#simulated")
    # The adversary rewrote the guidance: the first lane's changes are drawn as a diff.
    assert page.locator("#contexts ins").count() > 0 and page.locator("#contexts del").count() > 0


@pytest.mark.slow  # a browser
def test_the_gallery_pages_through_every_sample(page, facts: dict) -> None:
    total = facts["proposals"]  # every one has an outcome: kept, discarded or dropped
    assert total > PAGE_SIZE and _shown(page) == f"samples 1–{PAGE_SIZE} of {total}"
    first = _cards(page)
    assert len(first) == PAGE_SIZE
    page.click("#next")
    second = _cards(page)
    assert page.inner_text("#page").startswith("page 2 of ") and not {c[0] for c in first} & {c[0] for c in second}
    page.click("#last")
    assert len(_cards(page)) == total - PAGE_SIZE * ((total - 1) // PAGE_SIZE)


@pytest.mark.slow  # a browser
def test_filters_choose_what_is_visible(page, facts: dict) -> None:
    before = _cards(page)
    page.select_option("#outcome", "adversarial")
    shown = _cards(page)
    assert shown != before and len(shown) == min(PAGE_SIZE, facts["adversarial"])
    assert {outcome for _, outcome, _ in shown} == {"adversarial"}
    assert _shown(page).endswith(f"of {facts['adversarial']}")
    page.select_option("#outcome", "discard")
    judged_out = facts["discarded"] - facts["dropped"]  # `discarded` counts the critics' drops too
    assert {outcome for _, outcome, _ in _cards(page)} == {"discard"} and _shown(page).endswith(f"of {judged_out}")
    page.select_option("#outcome", "adversarial")
    page.select_option("#lane", "1")
    lane = facts["lanes"][1]["adversarial"]
    assert {(o, ln) for _, o, ln in _cards(page)} == {("adversarial", "1")} and _shown(page).endswith(f"of {lane}")


@pytest.mark.slow  # a browser
def test_the_gallery_filters_by_image_kind(page, facts: dict) -> None:
    # Each kind's count in `stats --json` (by_kind) is what the filter shows, and only that kind.
    offered = page.eval_on_selector_all("#kind option", "options => options.map(o => o.value)")
    assert set(offered) - {""} == set(facts["by_kind"]) and len(facts["by_kind"]) >= 8
    for kind in list(facts["by_kind"])[:4]:
        page.select_option("#kind", kind)
        kinds = page.eval_on_selector_all("#cards .card", "cards => cards.map(c => c.dataset.kind)")
        assert kinds and set(kinds) == {kind}
        assert _shown(page).endswith(f"of {facts['by_kind'][kind]['proposals']}")
    # Filters combine: a kind's kept samples (plain keeps and adversarial ones) add up to by_kind's kept.
    kind = min(facts["by_kind"], key=lambda k: facts["by_kind"][k]["kept"] or 10**6)  # fits one page
    shown = 0
    for outcome in ("keep", "adversarial"):
        page.select_option("#outcome", outcome)
        page.select_option("#kind", kind)
        cards = page.eval_on_selector_all("#cards .card", "cards => cards.map(c => c.dataset.outcome + '/' + c.dataset.kind)")
        assert set(cards) <= {f"{outcome}/{kind}"}
        shown += len(cards)
    assert shown == facts["by_kind"][kind]["kept"] > 0


def test_the_report_is_one_file_that_needs_no_network(report: Path) -> None:
    html = report.read_text()
    assert "<link" not in html and "src=\"http" not in html and "url(http" not in html
    assert html.count("data:image/svg+xml;base64,") == 4 and "data:image/webp;base64," in html


def test_an_existing_report_is_replaced_only_when_asked(small_run: Path, report: Path) -> None:
    before = report.read_bytes()
    refused = cads("report", "small", "--out", str(report), cwd=small_run, check=False)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr and report.read_bytes() == before
    cads("report", "small", "--out", str(report), "--overwrite", cwd=small_run)
    assert report.read_bytes() == before  # the same run gives the same page
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]
