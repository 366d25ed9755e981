"""The viewer in a real headless Chromium (Playwright), opened from file:// and served by
http.server: no console errors, grid counts under axes and filters, slider, A/B toggle
and pixel diff, hostile text shown as text, sortable tables.

Chromium: $T2IBENCH_CHROMIUM, else `chromium`, `chromium-browser` or `google-chrome` on
PATH (nothing is downloaded). Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
from test_viewer import HOSTILE, SQUARE, make_results, write_experiment

from t2ibench.report.viewer import build_viewer, find_chromium

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


CHROMIUM = find_chromium()
if CHROMIUM is None:
    reason = "no Chromium found: install Debian's chromium or set T2IBENCH_CHROMIUM"
    if os.environ.get("T2IBENCH_REQUIRE_BROWSER"):  # CI (.ci/run): skipping is a failure
        pytest.fail(f"T2IBENCH_REQUIRE_BROWSER is set but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed: pip install -r requirements-dev.txt"
)


class QuietHandler(SimpleHTTPRequestHandler):
    """http.server's handler without the request log."""

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A synthetic results folder with its viewer in results/report."""
    results = make_results(tmp_path_factory.mktemp("viewer"))
    build_viewer(results, results / "report")
    return results


@pytest.fixture(scope="module")
def server(site):
    """http.server on a free port, serving the results folder (so ../<exp>/ resolves)."""
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(params=["file", "http"])
def url(request, site):
    """index.html opened from disk, then through the http server."""
    if request.param == "file":
        return (site / "report" / "index.html").as_uri()
    return request.getfixturevalue("server") + "/report/index.html"


class Viewer:
    """A page on the viewer that records console errors/warnings, page errors and dialogs."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda err: self.problems.append(f"page error: {err}"))
        self.page.on("dialog", self._dialog)
        self.page.goto(url)
        self.page.wait_for_selector("html[data-thumbs-ready]", timeout=10_000)

    def _console(self, message):
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def count(self, selector: str = "#grid img.thumb") -> int:
        return self.page.locator(selector).count()

    def select(self, selector: str, value: str) -> None:
        self.page.select_option(selector, value)

    def pick(self, side: str, experiment: str, model: str, cell: str, prompt: int, seed: int):
        """Choose the A or B image with the compare pane's selects."""
        for field, value in [
            ("experiment", experiment),
            ("model", model),
            ("cell", cell),
            ("prompt", str(prompt)),
            ("seed", str(seed)),
        ]:
            self.select(f"#pick-{side}-{field}", value)

    def diff(self) -> dict:
        """The diff canvas's figures once computed, and its count of non-black pixels and
        of red (highlighted) pixels."""
        self.page.wait_for_selector("#diff-canvas[data-mad]", timeout=10_000)
        return self.page.evaluate(
            """() => {
                const c = document.getElementById('diff-canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let nonzero = 0, red = 0;
                for (let i = 0; i < d.length; i += 4) {
                    if (d[i] || d[i + 1] || d[i + 2]) nonzero++;
                    if (d[i] === 230 && d[i + 1] === 20 && d[i + 2] === 60) red++;
                }
                return {mad: +c.dataset.mad, differing: +c.dataset.differing,
                        source: c.dataset.source, nonzero, red, width: c.width};
            }"""
        )

    def close(self) -> None:
        self.page.close()
        assert self.problems == [], self.problems
        assert self.dialogs == [], self.dialogs


@pytest.fixture
def viewer(browser, url):
    page = Viewer(browser, url)
    yield page
    page.close()


def test_grid_counts_follow_axes_and_filters(viewer, url):
    assert viewer.page.locator("#experiment option").count() == 2
    # base: 2 models x 3 prompts x 2 seeds, rows prompt, columns model.
    assert viewer.count() == 12 and viewer.count("#grid-table tbody tr") == 3
    viewer.select("#filter-seed", "11")
    assert viewer.count() == 6
    viewer.select("#filter-model", "m1")
    assert viewer.count() == 3
    viewer.select("#experiment", "sweep")  # 3 cells x 3 prompts x 2 seeds; filters reset
    assert viewer.count() == 18 and viewer.count("#grid-table thead th") == 1 + 3
    viewer.select("#rows", "cell")
    viewer.select("#cols", "seed")
    assert viewer.count() == 18 and viewer.count("#grid-table tbody tr") == 3
    viewer.select("#filter-prompt", "2")
    assert viewer.count() == 6
    viewer.select("#metric", "clip_score")
    assert viewer.page.locator("#legend-min").text_content() not in ("", "–")
    assert viewer.count(".tile.scored") == 6
    if url.startswith("file:"):
        ARTIFACTS.mkdir(exist_ok=True)
        viewer.select("#filter-prompt", "")
        viewer.page.screenshot(path=str(ARTIFACTS / "viewer-grid.png"))
    # Clicking a thumbnail opens the full image.
    viewer.page.locator("#grid img.thumb").first.click()
    assert viewer.page.locator("#lightbox").is_visible()
    full = viewer.page.get_attribute("#lightbox-img", "src")
    assert full.startswith("../sweep/m1/") and full.endswith(".png")
    viewer.page.wait_for_function("document.getElementById('lightbox-img').naturalWidth === 48")
    viewer.page.keyboard.press("Escape")
    assert not viewer.page.locator("#lightbox").is_visible()


def test_hostile_text_renders_as_text(viewer):
    page = viewer.page
    page.locator("#grid img.thumb").nth(4).click()  # base: row 1 is the hostile prompt
    assert HOSTILE in page.locator("#lightbox-info").text_content()
    text = page.evaluate("document.body.textContent")
    assert HOSTILE in text and "</script><b>not bold</b>" in text
    assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    assert not page.evaluate(
        "[...document.querySelectorAll('b')].some(b => b.textContent == 'not bold')"
    )
    assert page.evaluate("[...document.scripts].every(s => s.src && !s.textContent)")
    assert page.locator("#description b").count() == 0
    page.keyboard.press("Escape")
    page.click("#tab-overview")
    assert page.locator("#plots img").count() == 1
    # The findings come first in the overview, their sentences as text.
    assert "1 of 2 comparisons show a difference" in page.locator("#findings").text_content()
    assert HOSTILE in page.locator("#findings li").first.text_content()
    assert page.locator("#findings b, #findings img").count() == 0
    page.locator("#metadata-box summary").click()
    assert HOSTILE.split('"')[0] in page.locator("#metadata").text_content()  # JSON-quoted


def test_compare_slider_toggle_and_diff(viewer, url):
    page = viewer.page
    page.click("#tab-compare")
    viewer.pick("A", "sweep", "m1", "x-1", 0, 11)
    viewer.pick("B", "sweep", "m1", "x-2", 0, 11)
    a_src = page.get_attribute("#stage img.a", "src")
    b_src = page.get_attribute("#stage img.b", "src")
    assert unquote(a_src).endswith("sweep/m1/x-1/p000_i00_s11.png") and "x-2" in b_src

    # Slider: the range input and a drag on the stage move the clip of A.
    clip = "document.querySelector('#stage img.a').style.clipPath"
    assert page.evaluate(clip) == "inset(0px 50% 0px 0px)"
    page.locator("#slider").fill("20")
    assert page.evaluate(clip) == "inset(0px 80% 0px 0px)"
    box = page.locator("#stage").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + 10)
    page.mouse.down()
    page.mouse.up()
    assert page.evaluate(clip) == "inset(0px 25% 0px 0px)"

    # A/B toggle: the button and the T key switch the shown image.
    page.check("input[name=mode][value=toggle]")
    assert page.get_attribute("#toggle-img", "src") == a_src
    page.click("#toggle-button")
    assert page.get_attribute("#toggle-img", "src") == b_src
    page.keyboard.press("t")
    assert page.get_attribute("#toggle-img", "data-showing") == "A"

    # Diff: identical pixels give zero; the 12 x 12 white square of x-3 is found exactly.
    page.check("input[name=mode][value=diff]")
    # It opens on the heatmap, which tells two different images apart at a glance.
    assert page.input_value("#diff-mode") == "heatmap"
    viewer.select("#diff-mode", "absolute")
    same = viewer.diff()
    assert (same["mad"], same["differing"], same["nonzero"]) == (0, 0, 0)
    assert same["source"] == ("copy" if url.startswith("file:") else "original")
    viewer.pick("B", "sweep", "m1", "x-3", 0, 11)
    other = viewer.diff()
    assert other["differing"] == other["nonzero"] == SQUARE * SQUARE and other["mad"] > 0
    viewer.select("#diff-mode", "highlight")
    assert viewer.diff()["red"] == SQUARE * SQUARE
    viewer.select("#diff-mode", "heatmap")
    heat = viewer.diff()
    assert heat["differing"] == SQUARE * SQUARE and heat["nonzero"] >= SQUARE * SQUARE
    assert "Mean absolute difference" in page.locator("#diff-stats").text_content()
    if url.startswith("file:"):
        ARTIFACTS.mkdir(exist_ok=True)
        viewer.select("#diff-mode", "highlight")
        viewer.diff()
        page.screenshot(path=str(ARTIFACTS / "viewer-compare.png"), full_page=True)

    # Images of different sizes are compared with B scaled to A, and the page says so.
    viewer.pick("A", "base", "m1", "default", 0, 11)
    viewer.pick("B", "base", "m2", "default", 0, 11)
    assert (
        "Different sizes: B is scaled to A's size" in page.locator("#compare-note").text_content()
    )
    assert viewer.diff()["width"] == 48


def test_tiles_choose_the_compared_images(viewer):
    page = viewer.page
    tiles = page.locator("#grid .tile")
    tiles.nth(1).hover()
    tiles.nth(1).locator("button.set-a").click()
    tiles.nth(4).hover()
    tiles.nth(4).locator("button.set-b").click()
    assert "seed 12" in page.locator("#selection .side-a").text_content()
    page.click("#open-compare")
    assert page.locator("#view-compare").is_visible()
    assert page.input_value("#pick-A-seed") == "12" and page.input_value("#pick-B-prompt") == "1"


def test_tables_sort_numerically(viewer):
    page = viewer.page
    page.click("#tab-tables")
    header = page.locator("#comparisons-table th[data-col=p_value]")
    column = page.locator("#comparisons-table thead th").all_text_contents().index("p_value")

    def values():
        cells = page.locator(f"#comparisons-table tbody tr td:nth-child({column + 1})")
        return [float(t) for t in cells.all_text_contents()]

    header.click()
    assert values() == sorted(values()) and len(values()) == 6
    header.click()
    assert values() == sorted(values(), reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    assert "method: paired on" in page.locator("#comparisons-method").text_content()
    viewer.select("#summary-metric", "pickscore")
    columns = page.locator("#summary-table thead th").all_text_contents()
    assert "pickscore_mean" in columns and "clip_score_mean" not in columns


def test_a_custom_prompt_experiment_is_shown_and_compared(browser, tmp_path):
    """`prompt-<hash>/<name>` is picked, drawn, opened and diffed like any experiment
    (its name, with a `/`, is in the selects, the tiles' ids and the image URLs)."""
    results = make_results(tmp_path)
    custom = "prompt-1a2b3c4d/base"
    write_experiment(results, custom, {"m1": 48}, {"default": ({}, False)}, {})
    build_viewer(results, results / "report")
    viewer = Viewer(browser, (results / "report" / "index.html").as_uri())
    page = viewer.page
    assert page.locator("#experiment option").count() == 3
    viewer.select("#experiment", custom)
    assert viewer.count() == 6 and viewer.count("#grid-table tbody tr") == 3
    page.wait_for_function(
        "[...document.querySelectorAll('#grid img.thumb')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    page.locator("#grid img.thumb").first.click()
    assert page.get_attribute("#lightbox-img", "src").startswith(f"../{custom}/m1/default/")
    page.wait_for_function("document.getElementById('lightbox-img').naturalWidth === 48")
    page.keyboard.press("Escape")
    page.click("#tab-compare")
    viewer.pick("A", custom, "m1", "default", 0, 11)
    viewer.pick("B", "base", "m1", "default", 0, 11)  # the same pixels, another file
    page.check("input[name=mode][value=diff]")
    viewer.select("#diff-mode", "absolute")
    same = viewer.diff()
    assert (same["mad"], same["differing"], same["nonzero"]) == (0, 0, 0)
    viewer.close()


def test_failures_of_a_verdict_metric_are_filtered_and_their_reasons_shown(browser, tmp_path):
    """A pass/fail metric (GenEval's, as the data marks it) gives the grid a filter to
    its failures or passes; an image's reason is in its details."""
    import csv
    import json

    results = make_results(tmp_path)
    exp = results / "base"
    with (exp / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):  # every third image fails
        row["geneval"] = "0" if i % 3 == 0 else "1"
        row["geneval_reason"] = "expected dog>=2, found 1" if i % 3 == 0 else ""
    with (exp / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with (exp / "summary.csv").open(newline="") as f:
        summary = list(csv.DictReader(f))
    for row in summary:
        row.update(geneval_mean="0.66", geneval_ci_low="0.5", geneval_ci_high="0.8")
    with (exp / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    meta = json.loads((exp / "metadata.json").read_text())
    meta["metrics"] = {
        "geneval": {
            "granularity": "image",
            "summary": "GenEval",
            "columns": {"geneval": {"higher_is_better": True, "note": "", "verdict": True}},
            "notes": ["geneval_reason"],
        }
    }
    (exp / "metadata.json").write_text(json.dumps(meta))
    build_viewer(results, results / "report")
    viewer = Viewer(browser, (results / "report" / "index.html").as_uri())
    assert viewer.count() == 12
    viewer.select("#filter-verdict", "geneval:0")
    assert viewer.count() == 4
    viewer.select("#filter-verdict", "geneval:1")
    assert viewer.count() == 8
    viewer.select("#filter-verdict", "geneval:0")
    viewer.page.locator("#grid img.thumb").first.click()
    assert "expected dog>=2, found 1" in viewer.page.locator("#lightbox-info").inner_text()
    viewer.page.keyboard.press("Escape")
    viewer.select("#experiment", "sweep")  # no verdict metric: the filter is off
    assert viewer.page.locator("#filter-verdict").is_disabled() and viewer.count() == 18
    viewer.close()
