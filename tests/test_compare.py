"""`compare` and the paged grid renderer, on small synthetic results written in tmp_path."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2ibench import cli
from t2ibench.errors import InputError
from t2ibench.report import grid as g
from t2ibench.report import grid_render as gr
from t2ibench.report.compare import (
    HIGHLIGHT,
    CompareRequest,
    diff_image,
    output_paths,
    run_compare,
    select_images,
)
from t2ibench.report.results import load_results

SIZE = 16
CELL = 32


def colour(p: int, c: int, m: int, s: int) -> tuple[int, int, int]:
    """A distinct solid colour per image (prompt, cell, model, seed index)."""
    return (30 + 60 * p, 30 + 50 * c, 30 + 70 * m + 30 * s)


def write_experiment(
    root: Path,
    name: str = "sweep",
    models=("m1",),
    values=("1.0", "2.0", "3.0"),
    prompts=("cat", "dog"),
    seeds=(7, 8),
    sizes: dict | None = None,
) -> Path:
    """results/<name>/ with metadata.json, results.csv and one solid PNG per image.

    `values` empty makes a baseline (one cell, `default`). image_path is relative to
    the run's working directory, which is not the test's: it is found under the
    experiment's folder. `sizes[(prompt, cell, model, seed)]` overrides an image size.
    """
    results = root / "results"
    exp_dir = results / name
    cells = {f"shift-{v}": {"shift": v} for v in values} or {"default": {}}
    rows = []
    for m, model in enumerate(models):
        for c, (cell, cell_values) in enumerate(cells.items()):
            for p, prompt in enumerate(prompts):
                for s, seed in enumerate(seeds):
                    rel = f"{model}/{cell}/p{p:03d}_i{s:02d}_s{seed}.png"
                    size = (sizes or {}).get((p, cell, model, seed), (SIZE, SIZE))
                    (exp_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                    Image.new("RGB", size, colour(p, c, m, s)).save(exp_dir / rel)
                    rows.append(
                        {
                            "experiment": name,
                            "model": model,
                            "cell": cell,
                            "shift": cell_values.get("shift", ""),
                            "prompt_id": prompt,
                            "prompt_index": p,
                            "prompt_text": f"a photo of a {prompt}",
                            "image_index": s,
                            "seed": seed,
                            "steps": 4,
                            "clip_score": 20 + p + c / 10,
                            "image_path": f"results/{name}/{rel}",
                        }
                    )
    with (exp_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    metadata = {
        "description": f"{name} description",
        "variables": {"shift": list(values)} if values else {},
        "cells": {
            cell: {"values": v, "settings": {}, "reference": i == 0}
            for i, (cell, v) in enumerate(cells.items())
        },
        "reference_cell": next(iter(cells)),
        "models": [{"name": m} for m in models],
        "prompts": [
            {"index": i, "id": p, "text": f"a photo of a {p}"} for i, p in enumerate(prompts)
        ],
        "seeds": list(seeds),
    }
    (exp_dir / "metadata.json").write_text(json.dumps(metadata, sort_keys=True))
    return results


@pytest.fixture
def results_dir(tmp_path) -> Path:
    return write_experiment(tmp_path / "work")


@pytest.fixture
def out(tmp_path, monkeypatch) -> Path:
    """An empty current directory for outputs."""
    folder = tmp_path / "out"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def pixel(image, xy) -> tuple:
    return image.getpixel(xy)[:3]


def render_one(grid, max_side=gr.MAX_SIDE):
    """Every page of the grid at tile size CELL: (layout, pages, images)."""
    lay = gr.layout(grid, CELL, max_side)
    pages = gr.paginate(grid, lay, max_side)
    return lay, pages, [gr.render_page(grid, lay, page) for page in pages]


def tile_origin(lay, page, row: int, column: int) -> tuple[int, int]:
    """Top-left pixel of grid row `row`, column `column` on `page`, from the layout's
    public sizes: below the page's caption lines and the column header and the rows of
    the page above it; right of the row labels and the columns of the page before it."""
    y = gr.PADDING + page.notes_height + lay.header_height
    y += sum(lay.row_heights[r] + gr.PADDING for r in page.rows if r < row)
    x = lay.x0 + (column - page.columns.start) * (lay.cell_size + gr.PADDING)
    return x, y


# ---------------------------------------------------------------- grid


def test_grid_is_rows_by_columns_with_each_image_in_place(results_dir):
    results = load_results(results_dir, "sweep")
    grid = g.axis_grid(results)  # prompts x values
    assert grid.rows == ["cat: a photo of a cat", "dog: a photo of a dog"]
    assert grid.columns == ["shift=1.0 (reference)", "shift=2.0", "shift=3.0"]
    lay, pages, (image,) = render_one(grid)
    assert image.width == gr.PADDING + lay.label_width + 3 * (CELL + gr.PADDING)
    for r in range(2):
        for c in range(3):
            x, y = tile_origin(lay, pages[0], r, c)
            assert pixel(image, (x + CELL // 2, y + CELL // 2)) == colour(r, c, 0, 0)
    assert any("seed: 7 (first of 2" in note for note in grid.notes)


def test_other_axes_filters_and_hidden_axis_note(tmp_path):
    results_dir = write_experiment(tmp_path, models=("m1", "m2", "m3"))
    results = load_results(results_dir, "sweep")
    grid = g.axis_grid(results, "models", "values", {"seed": [8]})
    assert grid.rows == ["m1", "m2", "m3"] and len(grid.columns) == 3
    assert "seed: 8" in grid.notes and any("prompt: cat (#0) (first of 2" in n for n in grid.notes)
    lay, pages, (image,) = render_one(grid)
    x, y = tile_origin(lay, pages[0], 2, 1)
    assert pixel(image, (x + 5, y + 5)) == colour(0, 1, 2, 1)
    grid = g.axis_grid(results, "cells", "seeds", {"model": ["m2"], "cell": ["shift-3.0"]})
    assert grid.rows == ["shift-3.0"] and grid.columns == ["seed 7", "seed 8"]
    assert "model: m2" in grid.notes
    with pytest.raises(InputError, match="same dimension"):
        g.axis_grid(results, "values", "cells")


def test_baseline_defaults_to_prompts_by_models(tmp_path):
    results_dir = write_experiment(tmp_path, name="baseline", models=("a", "b"), values=())
    results = load_results(results_dir, "baseline")
    assert g.default_columns(results) == "models"
    assert g.axis_grid(results).columns == ["a", "b"]


def test_pages_stay_within_the_cap_and_repeat_the_header(results_dir):
    results = load_results(results_dir, "sweep")
    grid = g.axis_grid(results, "seeds", "values", {"prompt": [0]})
    grid.rows = grid.rows * 5  # 10 rows
    grid.tiles.update({(r, c): grid.tiles[(r % 2, c)] for r in range(10) for c in range(3)})
    cap = 300
    lay, pages, images = render_one(grid, cap)
    assert len(images) >= 3
    assert all(im.width <= cap and im.height <= cap for im in images)
    assert sum(len(p.rows) for p in pages) == 10
    assert any(line.startswith("page 1/") for line in pages[0].lines)
    bands = []
    for page, image in zip(pages, images, strict=True):
        x, y = tile_origin(lay, page, page.rows.start, page.columns.start)
        header = image.crop((x, y - lay.header_height, image.width, y))
        bands.append((page.columns, np.asarray(header)))
    same_columns = [band for cols, band in bands if cols == bands[0][0]]
    assert len(same_columns) >= 2 and np.asarray(same_columns[0]).min() < 128  # ink
    assert all(np.array_equal(band, same_columns[0]) for band in same_columns)


def test_max_rows_and_numbered_page_files(results_dir, tmp_path):
    results = load_results(results_dir, "sweep")
    grid = g.axis_grid(results, "prompts", "values")
    assert gr.count_pages(grid, CELL, max_rows=1) == 2
    paths = gr.page_paths(tmp_path / "x" / "g.png", 2)
    assert [p.name for p in paths] == ["g-p1.png", "g-p2.png"]
    assert gr.write_grid(grid, paths, CELL, max_rows=1) == paths and all(p.exists() for p in paths)
    assert gr.page_paths(tmp_path / "g.png", 1) == [tmp_path / "g.png"]


def test_long_labels_wrap_and_grow_the_row_not_the_width():
    words = [f"word{i:03d}" for i in range(40)]
    long = " ".join(words)[:300]
    tiles = {(0, 0): None}
    short_lay = gr.layout(gr.Grid(["short label"], ["col"], tiles), CELL, 400)
    long_lay = gr.layout(gr.Grid([long], ["col"], tiles), CELL, 400)
    lines = long_lay.row_lines[0]
    assert 3 < len(lines) < gr.ROW_LABEL_MAX_LINES
    assert " ".join(lines).split() == long.split()  # every word drawn, none cut
    assert all(gr.label_font().getlength(line) <= long_lay.label_width for line in lines)
    assert long_lay.row_heights[0] > short_lay.row_heights[0] >= CELL
    _, _, (image,) = render_one(gr.Grid([long], ["col"], tiles), max_side=400)
    assert image.width <= 400
    ink_rows = np.where((np.asarray(image.convert("L"))[:, : long_lay.label_width] < 100).any(1))
    assert ink_rows[0].max() - ink_rows[0].min() > 3 * long_lay.line_height


def test_enormous_labels_are_ellipsised_and_long_words_split():
    lines = gr.wrap_label("lorem ipsum " * 500, 150, 5)
    assert len(lines) == 5 and lines[-1].endswith(gr.ELLIPSIS)
    word = "x" * 80
    pieces = gr.wrap_label(word, 60)
    assert len(pieces) > 1 and "".join(pieces) == word


def test_metric_is_drawn_under_each_image(results_dir):
    results = load_results(results_dir, "sweep")
    plain = g.axis_grid(results, metric=None)
    scored = g.axis_grid(results, metric="clip_score")
    assert scored.captions[(1, 2)] == "clip_score 21.20"
    assert gr.layout(plain, CELL).caption_height == 0
    lay, pages, (image,) = render_one(scored)
    x, y = tile_origin(lay, pages[0], 0, 0)
    band = np.asarray(image.convert("L").crop((x, y + CELL, x + CELL, y + CELL + 16)))
    assert band.min() < 100  # text drawn where the plain grid has nothing
    with pytest.raises(InputError, match="unknown metric 'nope'.*clip_score"):
        g.axis_grid(results, metric="nope")


def test_missing_image_is_a_marked_tile(results_dir):
    (results_dir / "sweep" / "m1" / "shift-2.0" / "p001_i00_s7.png").unlink()
    results = load_results(results_dir, "sweep")
    lay, pages, (image,) = render_one(g.axis_grid(results))
    x, y = tile_origin(lay, pages[0], 1, 1)
    assert pixel(image, (x + CELL - 6, y + CELL // 2)) == gr.MISSING_FILL
    x, y = tile_origin(lay, pages[0], 1, 0)
    assert pixel(image, (x + CELL - 6, y + CELL // 2)) == colour(1, 0, 0, 0)


def test_a_tile_whose_file_is_not_the_scored_one_shows_why_not_a_score(results_dir):
    """results.csv's score belongs to the image that was scored: under a missing file,
    one that does not decode, or one that is not the image its record describes, the
    caption says so instead."""
    import hashlib

    folder = results_dir / "sweep" / "m1" / "shift-2.0"
    (folder / "p001_i00_s7.png").unlink()
    kept = folder / "p000_i00_s7.png"
    kept.with_suffix(".json").write_text(
        json.dumps({"png_sha256": hashlib.sha256(kept.read_bytes()).hexdigest()})
    )
    results = load_results(results_dir, "sweep")
    scored = g.axis_grid(results, metric="clip_score")
    captions = set(scored.captions.values())
    assert "missing" in captions and not any("n/a" in c for c in captions)
    before = dict(scored.captions)
    kept.write_bytes(Image.new("RGB", (8, 8), (1, 2, 3)).tobytes()[:60])  # not a PNG
    after = g.axis_grid(load_results(results_dir, "sweep"), metric="clip_score").captions
    [changed] = [k for k in after if after[k] != before[k]]
    assert after[changed] == "unreadable"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buffer, format="PNG")
    kept.write_bytes(buffer.getvalue())  # a PNG, but another than the recorded one
    again = g.axis_grid(load_results(results_dir, "sweep"), metric="clip_score").captions
    assert again[changed] == "changed since it was scored"
    assert before[changed].startswith("clip_score ")


def test_experiment_grid_pages(tmp_path):
    results_dir = write_experiment(tmp_path, models=("m1", "m2"))
    out_dir = tmp_path / "grids"
    out_dir.mkdir()
    (out_dir / "grid-p9.png").write_bytes(b"stale")
    (out_dir / "keep.png").write_bytes(b"other")
    paths = g.experiment_grid_pages(results_dir, "sweep", out_dir, cell_size=CELL)
    assert [p.name for p in paths] == ["grid-p1.png", "grid-models-p1.png"]
    assert not (out_dir / "grid-p9.png").exists() and (out_dir / "keep.png").exists()
    paged = g.experiment_grid_pages(results_dir, "sweep", out_dir, 64, max_side=300)
    assert len(paged) > 2 and all(max(Image.open(p).size) <= 300 for p in paged)
    assert {p.name for p in paged} == {p.name for p in out_dir.glob("grid*.png")}
    again = g.experiment_grid_pages(results_dir, "sweep", out_dir, 64, max_side=300)
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(paged, again, strict=True))


def test_a_grid_of_paths_with_a_missing_file_is_one_page(tmp_path):
    """A grid whose tiles are image paths (one of a file that is not there, one not
    given) is drawn whole, on one page, with both tiles marked missing."""
    grid = gr.Grid(["a", "b"], ["x"], {(0, 0): str(tmp_path / "none.png")})
    assert gr.count_pages(grid, CELL) == 1
    (path,) = gr.write_grid(grid, gr.page_paths(tmp_path / "g.png", 1), CELL)
    image = Image.open(path)
    assert image.width > CELL and image.height > 2 * CELL
    lay = gr.layout(grid, CELL, gr.MAX_SIDE)
    (page,) = gr.paginate(grid, lay)
    for row in range(2):
        x, y = tile_origin(lay, page, row, 0)
        assert pixel(image, (x + CELL - 6, y + CELL // 2)) == gr.MISSING_FILL


# ---------------------------------------------------------------- diff


def crafted(change=None):
    a = np.full((8, 10, 3), 100, np.uint8)
    b = a.copy()
    if change:
        b[change] = (160, 100, 100)  # |A-B| = 60 in one channel
    return Image.fromarray(a), Image.fromarray(b)


def test_identical_images_diff_to_zero():
    a, b = crafted()
    for mode in ("highlight", "absolute", "heatmap"):
        image, text, mean = diff_image(a, b, mode)
        assert mean == 0 and "mean |A-B| 0.00" in text
    assert not (np.asarray(diff_image(a, b, "highlight")[0]) == HIGHLIGHT).all(2).any()
    assert np.asarray(diff_image(a, b, "absolute")[0]).max() == 0


def test_one_changed_pixel_in_each_mode():
    a, b = crafted(change=(3, 7))  # row 3, column 7
    red = (np.asarray(diff_image(a, b, "highlight")[0]) == HIGHLIGHT).all(2)
    assert red.sum() == 1 and red[3, 7]
    absolute = np.asarray(diff_image(a, b, "absolute")[0])
    assert absolute.max() == 255 and tuple(absolute[3, 7]) == (255, 0, 0)
    assert absolute.sum() == 255
    heat, text, _ = diff_image(a, b, "heatmap")
    heat = np.asarray(heat)
    assert tuple(heat[3, 7]) == (252, 255, 164) and tuple(heat[0, 0]) == (0, 0, 4)
    assert not np.array_equal(heat, absolute) and "0 to 20.0" in text
    assert (np.asarray(diff_image(a, b, "highlight", threshold=59)[0]) == HIGHLIGHT).all(2).any()
    assert (
        not (np.asarray(diff_image(a, b, "highlight", threshold=60)[0]) == HIGHLIGHT).all(2).any()
    )


def test_diff_output_shows_a_b_and_the_red_pixel(tmp_path, out):
    results_dir = write_experiment(tmp_path)
    b_path = results_dir / "sweep" / "m1" / "shift-3.0" / "p000_i00_s7.png"
    changed = np.asarray(Image.open(results_dir / "sweep/m1/shift-1.0/p000_i00_s7.png")).copy()
    changed[2, 5] = (255, 255, 255)
    Image.fromarray(changed).save(b_path)
    request = CompareRequest("sweep", "diff", values=["1.0,3.0"], cell_size=64)
    (path,) = run_compare(results_dir, request)
    assert path == Path("sweep-diff-highlight.png")
    image = np.asarray(Image.open(path))
    assert image.shape[1] == gr.PADDING + 3 * (64 + gr.PADDING)
    ys, xs = np.where((image == HIGHLIGHT).all(2))
    scale = 64 // SIZE
    assert len(xs) == scale * scale  # one pixel enlarged 4x
    assert xs.min() == gr.PADDING + 2 * (64 + gr.PADDING) + 5 * scale
    heat = run_compare(
        results_dir, CompareRequest("sweep", "diff", values=["1.0", "3.0"], diff_mode="heatmap")
    )
    assert Image.open(heat[0]).width == gr.PADDING + 4 * (256 + gr.PADDING)  # plus colour bar


def test_diff_of_different_sizes_needs_resize(tmp_path, out):
    results_dir = write_experiment(tmp_path, sizes={(0, "shift-2.0", "m1", 7): (24, 20)})
    request = CompareRequest("sweep", "diff", values=["1.0,2.0"])
    with pytest.raises(InputError, match=r"differ in size: A .* 16x16, B .* 24x20; pass --resize"):
        run_compare(results_dir, request)
    assert not list(out.iterdir())
    request.resize = True
    results = load_results(results_dir, "sweep")
    from t2ibench.report.compare import build_grid

    assert "resized from 24x20 to 16x16" in build_grid(results, request).captions[(0, 1)]
    assert len(run_compare(results_dir, request)) == 1


# ---------------------------------------------------------------- side by side and output


def test_side_by_side_is_one_row_of_n_images_wrapping_past_per_row(results_dir, out):
    results = load_results(results_dir, "sweep")
    selected, notes = select_images(results, {})
    assert [s.label for s in selected] == [
        "shift-1.0 (shift=1.0)",
        "shift-2.0 (shift=2.0)",
        "shift-3.0 (shift=3.0)",
    ]
    assert any(n.startswith("prompt: cat (#0) (first of 2") for n in notes)
    (path,) = run_compare(results_dir, CompareRequest("sweep", "side-by-side", cell_size=CELL))
    one_row = Image.open(path)
    assert one_row.width == gr.PADDING + 3 * (CELL + gr.PADDING)
    request = CompareRequest("sweep", "side-by-side", seeds=["7,8"], cell_size=CELL, per_row=4)
    (path,) = run_compare(results_dir, request)
    wrapped = Image.open(path)
    assert path.name == "sweep-side-by-side-2.png"  # the first is not overwritten
    assert wrapped.width == gr.PADDING + 4 * (CELL + gr.PADDING)
    assert wrapped.height > one_row.height + CELL


def test_output_names(tmp_path):
    request = CompareRequest("sweep", "grid", output=tmp_path / "mine.png")
    assert output_paths(request, 2) == [tmp_path / "mine-p1.png", tmp_path / "mine-p2.png"]
    with pytest.raises(InputError, match="ending .png"):
        output_paths(CompareRequest("sweep", output=tmp_path / "mine.jpg"), 1)
    (tmp_path / "sweep-grid.png").write_bytes(b"")
    assert output_paths(CompareRequest("sweep"), 1, tmp_path) == [tmp_path / "sweep-grid-2.png"]


def test_custom_prompt_experiments_are_listed_and_compared(tmp_path, out, capsys):
    """The results of a custom prompt are `prompt-<hash>/<name>`: listed, drawn (images
    found after the experiment's folder name) and written to a file name without `/`."""
    results_dir = write_experiment(tmp_path / "work", name="prompt-1a2b3c4d/sweep")
    write_experiment(tmp_path / "work", name="quick/sweep")  # its own results folder
    assert cli.main(["compare", "--results-dir", str(results_dir), "--list"]) == 0
    listing = capsys.readouterr().out
    assert "prompt-1a2b3c4d/sweep\n" in listing and "quick/" not in listing
    (path,) = run_compare(results_dir, CompareRequest("prompt-1a2b3c4d/sweep", cell_size=CELL))
    assert path == Path("prompt-1a2b3c4d_sweep-grid.png")
    results = load_results(results_dir, "prompt-1a2b3c4d/sweep")
    grid = g.axis_grid(results)
    assert grid.notes[0].startswith("prompt-1a2b3c4d/sweep: prompts (rows)")
    lay, pages, _ = render_one(grid)
    image = Image.open(path)
    x, y = tile_origin(lay, pages[0], 1, 2)
    assert pixel(image, (x + CELL // 2, y + CELL // 2)) == colour(1, 2, 0, 0)
    with pytest.raises(InputError, match="unknown experiment 'quick/sweep'"):
        load_results(results_dir, "quick/sweep")
    assert [r.name for r in [load_results(results_dir / "quick", "sweep")]] == ["sweep"]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("request_args", "message"),
    [
        ({"experiment": "nope"}, r"unknown experiment 'nope' .*known: sweep"),
        ({"prompts": ["fish"]}, r"unknown prompt 'fish' .*valid: cat \(0\), dog \(1\)"),
        ({"prompts": ["9"]}, r"unknown prompt '9'"),
        ({"values": ["2.0,7.5"]}, r"unknown value '7.5' .*valid: shift-1.0 \(shift=1.0\)"),
        ({"seeds": ["99"]}, r"unknown seed '99' .*valid: 7, 8"),
        ({"models": ["m9"]}, r"unknown model 'm9' .*valid: m1"),
        ({"metric": "nope"}, r"unknown metric 'nope'"),
        ({"mode": "diff"}, r"diff needs exactly two images, the selection has 3"),
        ({"mode": "diff", "values": ["1.0"]}, r"the selection has 1"),
        ({"mode": "side-by-side", "rows": "models"}, r"--rows and --cols apply to --mode grid"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(results_dir, out, request_args, message):
    request = CompareRequest(**{"experiment": "sweep", **request_args})
    with pytest.raises(InputError, match=message) as err:
        run_compare(results_dir, request)
    assert "\n" not in str(err.value)
    assert not list(out.iterdir())


def test_no_images_yet(results_dir, out):
    table = results_dir / "sweep" / "results.csv"
    table.write_text("")
    with pytest.raises(InputError, match="'sweep' has no images yet: .*results.csv has no rows"):
        run_compare(results_dir, CompareRequest("sweep"))
    table.unlink()
    with pytest.raises(InputError, match="results.csv is missing"):
        run_compare(results_dir, CompareRequest("sweep"))
    assert not list(out.iterdir())


def test_long_valid_lists_are_truncated(tmp_path, out):
    prompts = tuple(f"p{i}" for i in range(30))
    results_dir = write_experiment(tmp_path, prompts=prompts, values=("1.0",), seeds=(1,))
    with pytest.raises(InputError, match=r"p11 \(11\), \.\.\. \(30 in all\)"):
        run_compare(results_dir, CompareRequest("sweep", prompts=["zzz"]))


# ---------------------------------------------------------------- CLI


def test_cli_end_to_end(results_dir, out, capsys):
    base = ["compare", "--results-dir", str(results_dir)]
    assert cli.main([*base, "--list"]) == 0
    listing = capsys.readouterr().out
    assert "sweep" in listing and "images: 12" in listing and "cells: 3" in listing
    assert cli.main([*base, "-e", "sweep", "--info"]) == 0
    info = capsys.readouterr().out
    assert "variable shift: 1.0, 2.0, 3.0" in info and "seeds: 7, 8" in info
    assert "reference: shift-1.0" in info and "cat, dog" in info and "clip_score" in info
    args = ["-e", "sweep", "--rows", "cells", "--cols", "seeds", "--metric", "clip_score"]
    assert cli.main([*base, *args, "--cell-size", "32", "-o", "g.png"]) == 0
    assert "wrote g.png" in capsys.readouterr().out and Image.open("g.png").width > 2 * 32
    assert cli.main([*base, "-e", "sweep", "--mode", "diff", "--values", "1.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("t2ibench: error: diff needs exactly two images") and err.count("\n") == 1
    assert cli.main([*base, "-e", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    assert cli.main([*base]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["g.png"]


def test_cli_results_dir_from_config(results_dir, out, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"results_dir: {results_dir}\n")
    assert cli.main(["compare", "--configfile", str(config), "--list"]) == 0
    assert "sweep description" in capsys.readouterr().out
    assert cli.main(["compare", "--config", f"results_dir={tmp_path}/none", "--list"]) == 0
    assert "no experiments" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-rows", "0"], "argument --max-rows: expected an integer of at least 1, got '0'"),
        (["--per-row", "0"], "argument --per-row: expected an integer of at least 1"),
        (["--max-side", "1"], "argument --max-side: expected an integer of at least 64"),
        (["--threshold", "-1"], "argument --threshold: expected an integer from 0 to 255"),
        (["--cell-size", "x"], "argument --cell-size: expected an integer of at least 16, got 'x'"),
    ],
)
def test_compare_options_out_of_range_are_refused(capsys, args, message):
    from t2ibench import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["compare", *args])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
