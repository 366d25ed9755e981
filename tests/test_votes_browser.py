"""The viewer's Vote view in a real headless Chromium on a real (tiny) workflow run: 20
votes through the keyboard, labels hidden until each vote, a hostile prompt shown as
text, votes kept across a reload, undo, export; the exported file in votes/ gives
human.csv, with a changed image's vote set aside and a copied file counted once.

Screenshots go to tests/artifacts/ (vote-view.png)."""

from __future__ import annotations

import functools
import json
import shutil
import threading
from http.server import ThreadingHTTPServer

import pandas as pd
import pytest
from test_viewer import HOSTILE

from t2ibench.report.viewer import find_chromium

pytestmark = pytest.mark.slow  # a workflow run, then the browser

CHROMIUM = find_chromium()
if CHROMIUM is None:
    import os

    reason = "no Chromium found: install Debian's chromium or set T2IBENCH_CHROMIUM"
    if os.environ.get("T2IBENCH_REQUIRE_BROWSER"):
        pytest.fail(f"T2IBENCH_REQUIRE_BROWSER is set but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

MODELS = ["alpha-model", "beta-model"]
CELLS = ["steps-2", "steps-3"]


def vote_text(page) -> str:
    """What the current pair shows (its prompt, images and buttons)."""
    return page.locator("#vote-current").inner_text() + page.locator("#vote-current").inner_html()


def test_votes_in_the_browser_become_human_csv(tmp_path):
    from test_viewer_browser import ARTIFACTS

    from workflow_helpers import (
        make_workdir,
        metrics_only,
        nothing_to_do,
        output,
        snakemake,
        write_config,
    )

    work = make_workdir(tmp_path)
    prompts = {
        "p_001": {"text": "a red cube"},
        "p_002": {"text": HOSTILE},
        "p_003": {"text": "a cat"},
    }
    (work / "hostile.json").write_text(json.dumps(prompts))
    (work / "cmp.yaml").write_text("name: cmp\ndescription: x\nvariables:\n  steps: [2, 3]\n")
    write_config(
        work,
        {
            "models": [
                {"name": MODELS[0], "source": "builtin:tiny-sdxl"},
                {"name": MODELS[1], "source": "builtin:tiny-sdxl-vpred"},
            ],
            "experiments": ["cmp.yaml"],
            "generation": {"width": 64, "height": 64, "images_per_prompt": 2},
            "prompts": {"sources": ["hostile.json"]},
            "metrics": metrics_only("clip", "pickscore"),
            "torch_threads": 1,
        },
    )
    args = ("--configfile", "test-config.yaml")
    snakemake(work, *args)

    problems = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1200, "height": 900}
        )
        page = context.new_page()
        page.on("pageerror", lambda err: problems.append(str(err)))
        page.on("dialog", lambda d: (problems.append(d.message), d.dismiss()))
        page.goto((work / "results" / "report" / "index.html").as_uri())
        page.wait_for_selector("html[data-ready]")
        page.select_option("#experiment", "cmp")
        page.click("#tab-vote")
        assert "24 pair(s) left" in page.inner_text("#vote-progress")  # 2 x 6 + 2 x 6
        page.wait_for_function(
            "document.getElementById('vote-left').src.startsWith('data:image/')"
            " && document.getElementById('vote-right').src.startsWith('data:image/')"
        )
        page.screenshot(path=str(ARTIFACTS / "vote-view.png"))
        seen_prompts, keys = set(), ["ArrowLeft", "ArrowRight", "0", "1", "2"]
        for i in range(20):
            text = vote_text(page)
            for label in MODELS + CELLS:  # hidden until the vote
                assert label not in text, (i, label)
            seen_prompts.add(page.inner_text("#vote-prompt"))
            page.keyboard.press(keys[i % len(keys)])
            reveal = page.inner_text("#vote-reveal")
            assert reveal.startswith("Last vote: left was ")
            assert any(label in reveal for label in MODELS + CELLS)
        assert HOSTILE in seen_prompts  # the prompt's text, as text
        assert page.locator("#vote img[src='x']").count() == 0
        assert "20 vote(s)" in page.inner_text("#vote-progress")
        page.reload()
        page.wait_for_selector("html[data-ready]")
        page.select_option("#experiment", "cmp")
        page.click("#tab-vote")
        assert "20 vote(s) on this experiment; 4 pair(s) left" in page.inner_text("#vote-progress")
        page.keyboard.press("u")
        assert "19 vote(s)" in page.inner_text("#vote-progress")
        page.fill("#vote-voter", "ann")
        page.dispatch_event("#vote-voter", "change")
        with page.expect_download() as download:
            page.click("#vote-export")
        votes_dir = work / "votes"
        votes_dir.mkdir()
        download.value.save_as(votes_dir / "ann.json")
        page.screenshot(path=str(ARTIFACTS / "vote-view-after.png"))
        # Served over plain HTTP: the images come as blobs, named by nothing.
        from test_viewer_browser import QuietHandler

        handler = functools.partial(QuietHandler, directory=str(work / "results"))
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            served = browser.new_page()
            served.goto(f"http://127.0.0.1:{httpd.server_address[1]}/report/index.html")
            served.wait_for_selector("html[data-ready]")
            served.select_option("#experiment", "cmp")
            served.click("#tab-vote")
            served.wait_for_function(
                "document.getElementById('vote-left').src.startsWith('blob:')"
                " && document.getElementById('vote-right').src.startsWith('blob:')"
            )
            served.keyboard.press("1")
            assert "1 vote(s)" in served.inner_text("#vote-progress")
        finally:
            httpd.shutdown()
            httpd.server_close()
        browser.close()
    assert problems == []

    exported = json.loads((votes_dir / "ann.json").read_text())
    assert exported["voter"] == "ann" and exported["experiment"] == "cmp"
    assert len(exported["votes"]) == 19
    first = exported["votes"][0]
    assert set(first) == {"left", "right", "choice", "time"}
    assert first["left"]["path"].startswith("cmp/") and len(first["left"]["sha256"]) == 64
    # One image changed since its vote (another sha256), and the file given twice.
    exported["votes"][0]["left"]["sha256"] = "0" * 64
    (votes_dir / "ann.json").write_text(json.dumps(exported))
    shutil.copy(votes_dir / "ann.json", votes_dir / "ann-copy.json")

    run = snakemake(work, *args)
    out = work / "results" / "cmp"
    found = json.loads((out / "human.json").read_text())
    assert found["votes"]["read"] == 38 and found["votes"]["unique"] == 19
    assert found["votes"]["used"] == 18
    assert sum(found["votes"]["set_aside"].values()) == 1
    table = pd.read_csv(out / "human.csv")
    strengths = table[table["section"] == "strength"]
    assert set(strengths["name"]) == set(MODELS) | set(CELLS)
    agreement = table[table["section"] == "metric agreement"].set_index("name")
    assert {"clip_score", "pickscore"} <= set(agreement.index)
    assert agreement.loc["clip_score", "votes"] <= 18
    assert "## People's votes" in (out / "findings.md").read_text()
    assert "People's votes</h3>" in (out / "index.html").read_text()
    assert "People's ranking of the models" in (work / "results" / "report" / "data.js").read_text()
    assert "human" in run.log
    # A vote file that does not parse stops the next run in one line, nothing written.
    (votes_dir / "bad.json").write_text("{")
    bad = snakemake(work, *args, check=False)
    assert bad.returncode != 0
    assert "vote file votes/bad.json: does not parse as JSON" in bad.stderr + bad.stdout

    # A vote file removed: people's tables are made again from what is left.
    (votes_dir / "bad.json").unlink()
    (votes_dir / "ann-copy.json").unlink()
    snakemake(work, *args)
    assert json.loads((out / "human.json").read_text())["votes"]["read"] == 19
    # The last one gone, and one left that names another experiment: that is said, its
    # votes are not counted, and no table or section of people's votes is left.
    foreign = json.dumps(exported).replace('"cmp/', '"elsewhere/')
    (votes_dir / "other.json").write_text(foreign.replace('"cmp"', '"elsewhere"'))
    (votes_dir / "ann.json").unlink()
    run = snakemake(work, *args)
    assert "vote files name experiment(s) not in this run" in output(run)
    assert not (out / "human.csv").exists() and not (out / "human.json").exists()
    assert "People's votes" not in (out / "findings.md").read_text()
    assert "People's votes" not in (out / "index.html").read_text()
    assert nothing_to_do(snakemake(work, *args))
