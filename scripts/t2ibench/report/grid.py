"""Labelled image grids of an experiment's results: any two axes, paged above a size cap.

Axes: ``prompts``, ``values`` (the experiment's cells, labelled by their variable values;
the baseline's single cell is ``default``), ``cells`` (the same cells labelled by name),
``models`` and ``seeds``. A grid shows two axes of different dimensions (``values`` and
``cells`` are one dimension). Filters restrict any dimension to chosen keys, in the
order given.

Hidden axes: a dimension not shown is fixed to one key. When it has several candidates
(all of the experiment's, or the filtered ones) the grid shows the first and says so in
a caption line above the grid ("model: a (first of 3; ...)").

Labels wrap at spaces to the width of their area; a word wider than the area is split
across lines (after a `_`, `-` or `/` where it can), never dropped. Row labels are at
most ``LABEL_WIDTH`` px wide and the row grows to fit them; column labels are as wide
as a tile and the header grows. Past ``ROW_LABEL_MAX_LINES``, ``COLUMN_LABEL_MAX_LINES``
or ``CAPTION_MAX_LINES`` (per line of a caption, so a metric line is never lost) lines
a label is cut and its last line ends with "...".

Paging: a grid wider or taller than ``max_side`` px (or with more than ``max_rows``
rows) is split into pages, each within the cap: down the rows, then on to the next
block of columns. Every page repeats the column header and the caption lines, plus
"page i/n (rows a-b of N)". Pages are ``<stem>-p1.png``, ``<stem>-p2.png``, ... Under a
very small cap the row-label column narrows and the caption lines are cut ("...") so
that the header and one row still fit; a row taller than the cap still gets a page.

Missing images (not in results.csv, or the file is gone or unreadable) are drawn as a
grey tile with a cross and the word "missing".
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from t2ibench.errors import InputError

LABEL_WIDTH = 260
PADDING = 6
FONT_SIZE = 14
ROW_LABEL_MAX_LINES = 12
COLUMN_LABEL_MAX_LINES = 6
CAPTION_MAX_LINES = 4
NOTE_MAX_LINES = 4
MAX_SIDE = 8192
ELLIPSIS = "..."
MISSING_FILL = (232, 232, 232)
MISSING_LINE = (190, 190, 190)

AXES = ("prompts", "values", "models", "cells", "seeds")
AXIS_DIMENSION = {
    "prompts": "prompt",
    "values": "cell",
    "cells": "cell",
    "models": "model",
    "seeds": "seed",
}
DIMENSIONS = ("prompt", "model", "cell", "seed")
OPTION = {"prompt": "--prompt", "cell": "--values", "model": "--model", "seed": "--seed"}


# ---------------------------------------------------------------- drawing


@functools.lru_cache(maxsize=8)
def label_font(size: int = FONT_SIZE):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _text_width(text: str, font=None) -> float:
    return (font or label_font()).getlength(text)


def line_height(font=None) -> int:
    """Pixels from one line of label text to the next."""
    return (font or label_font()).getbbox("Ayg|")[3] + 4


def _fit_chars(word: str, width: int, font) -> int:
    """How many leading characters of `word` fit in `width` px (at least one), ending
    after a `_`, `-` or `/` when one falls in that part."""
    n = 1
    while n < len(word) and _text_width(word[: n + 1], font) <= width:
        n += 1
    breaks = [i + 1 for i, ch in enumerate(word[: n - 1]) if ch in "_-/"]
    return breaks[-1] if breaks and n < len(word) else n


def _ellipsise(line: str, width: int, font) -> str:
    while line and _text_width(line.rstrip() + ELLIPSIS, font) > width:
        line = line[:-1]
    return line.rstrip() + ELLIPSIS


def wrap_label(text: str, width: int, max_lines: int | None = None, font=None) -> list[str]:
    """Wrap `text` at spaces into lines at most `width` px wide.

    A word wider than a line is split across lines (no character is lost). With more
    than `max_lines` lines, the first `max_lines` are kept and the last ends with "...".
    Blank text gives no lines.
    """
    font = font or label_font()
    lines: list[str] = []
    for paragraph in str(text).splitlines():
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}" if current else word
            if _text_width(candidate, font) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            while _text_width(word, font) > width and len(word) > 1:
                cut = _fit_chars(word, width, font)
                lines.append(word[:cut])
                word = word[cut:]
            current = word
        if current:
            lines.append(current)
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _ellipsise(lines[-1], width, font)
    return lines


def fit(image, size: int):
    """Scale to fit a size x size tile, keeping the aspect ratio.

    Small images are enlarged with nearest-neighbour, so pixels stay visible rather than
    blurred; large ones are reduced with Lanczos; an image that already fits exactly is
    returned as it is.
    """
    from PIL import Image

    if max(image.size) == size:
        return image
    scale = size / max(image.size)
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    method = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    return image.resize(new_size, method)


def _open_tile(tile):
    """A tile as an RGB image: a PIL image, or the path of one; None if missing/unreadable."""
    from PIL import Image

    if tile is None:
        return None
    if isinstance(tile, Image.Image):
        return tile.convert("RGB")
    try:
        with Image.open(tile) as img:
            return img.convert("RGB")
    except (OSError, ValueError):
        return None


@dataclass
class Grid:
    """What a grid shows: labels, tiles and captions; no pixel sizes.

    `tiles[(row, col)]` is an image path, a PIL image, or None (a missing image);
    `captions[(row, col)]` is text drawn under the tile; `notes` are caption lines
    drawn above the grid on every page. Blank row labels everywhere mean no label
    column; blank column labels everywhere mean no header.
    """

    rows: list[str]
    columns: list[str]
    tiles: dict = field(default_factory=dict)
    captions: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Layout:
    """Measured sizes of a grid at a tile size, shared by all of its pages."""

    cell_size: int
    line_height: int
    label_width: int  # label text width plus its padding; 0 without row labels
    row_lines: list[list[str]]
    column_lines: list[list[str]]
    caption_lines: dict
    header_height: int
    caption_height: int
    row_heights: list[int]

    @property
    def x0(self) -> int:
        """Left edge of the first tile column."""
        return PADDING + self.label_width

    def width(self, columns: int) -> int:
        return self.x0 + columns * (self.cell_size + PADDING)


def layout(grid: Grid, cell_size: int, max_side: int | None = None) -> Layout:
    """Wrap every label and measure the label column, header, captions and rows.

    The row-label column is as wide as its longest label, at most LABEL_WIDTH, and
    narrower still when needed for it and one tile to fit within `max_side`.
    """
    font = label_font()
    lh = line_height(font)
    label_text = 0
    if any(label.strip() for label in grid.rows):
        natural = max(_text_width(label, font) for label in grid.rows)
        label_text = min(LABEL_WIDTH - PADDING, math.ceil(natural) + 1)
        if max_side is not None:
            room = max_side - cell_size - 3 * PADDING
            label_text = max(min(label_text, room), min(label_text, 40))
    row_lines = [wrap_label(r, label_text, ROW_LABEL_MAX_LINES, font) for r in grid.rows]
    column_lines = [wrap_label(c, cell_size, COLUMN_LABEL_MAX_LINES, font) for c in grid.columns]
    caption_lines = {
        key: [
            line
            for part in str(text).splitlines()
            for line in wrap_label(part, cell_size, CAPTION_MAX_LINES, font)
        ]
        for key, text in grid.captions.items()
    }
    header_lines = max((len(lines) for lines in column_lines), default=0)
    caption_count = max((len(lines) for lines in caption_lines.values()), default=0)
    caption_height = caption_count * lh + (2 if caption_count else 0)
    return Layout(
        cell_size=cell_size,
        line_height=lh,
        label_width=label_text + PADDING if label_text else 0,
        row_lines=row_lines,
        column_lines=column_lines,
        caption_lines=caption_lines,
        header_height=header_lines * lh + PADDING if header_lines else 0,
        caption_height=caption_height,
        row_heights=[max(cell_size + caption_height, len(lines) * lh) for lines in row_lines],
    )


def _note_lines(notes: list[str], width: int) -> list[str]:
    text_width = max(40, width - 2 * PADDING)
    return [line for note in notes for line in wrap_label(note, text_width, NOTE_MAX_LINES)]


def _notes_height(lines: list[str], lh: int) -> int:
    return len(lines) * lh + PADDING if lines else 0


@dataclass
class Page:
    """One page: which rows and columns of the grid it shows, its caption lines
    (wrapped), and the height kept for them above the column header."""

    rows: range
    columns: range
    lines: list[str]
    notes_height: int


def _chunks(count: int, size: int) -> list[range]:
    return [range(i, min(count, i + size)) for i in range(0, count, size)] or [range(0)]


def _split_rows(lay: Layout, top: int, max_side: int, max_rows: int | None) -> list[range]:
    """Greedy: as many rows per page as fit under `max_side` (at least one)."""
    pages, start, height = [], 0, top
    for r, row_height in enumerate(lay.row_heights):
        step = row_height + PADDING
        full = max_rows is not None and r - start >= max_rows
        if r > start and (height + step > max_side or full):
            pages.append(range(start, r))
            start, height = r, top
        height += step
    pages.append(range(start, len(lay.row_heights)))
    return pages


def _page_lines(notes: list[str], page_line: str | None, width: int, budget: int) -> list[str]:
    """Caption lines of a page: the notes, cut to `budget` lines in all with "..." when
    the cap leaves no more room, then the page line."""
    lines = _note_lines(notes, width)
    extra = _note_lines([page_line], width) if page_line else []
    room = max(1, budget - len(extra))
    if len(lines) > room:
        lines = lines[:room]
        lines[-1] = _ellipsise(lines[-1], max(40, width - 2 * PADDING), label_font())
    return lines + extra


def _span(what: str, part: range, total: int) -> str:
    if len(part) == 1:
        return f"{what} {part.start + 1} of {total}"
    return f"{what}s {part.start + 1}-{part.stop} of {total}"


def paginate(grid: Grid, lay: Layout, max_side: int = MAX_SIDE, max_rows: int | None = None):
    """Split the grid into pages within `max_side` px on either side and `max_rows` rows.

    Pages go down the rows, then on to the next block of columns. Caption lines that
    would leave no room for the header and a row under the cap are cut with "...".
    """
    per_page = max(1, (max_side - lay.x0) // (lay.cell_size + PADDING))
    column_chunks = _chunks(len(grid.columns), per_page)
    n_rows, n_cols = len(grid.rows), len(grid.columns)
    tallest = max(lay.row_heights, default=0) + PADDING
    budget = (max_side - 2 * PADDING - lay.header_height - tallest) // lay.line_height
    n = n_rows * n_cols
    worst = f"page {n}/{n} (rows {n_rows}-{n_rows} of {n_rows}, columns {n_cols}-{n_cols} of "
    worst += f"{n_cols})"
    for numbered in (False, True):
        plans = []
        for cols in column_chunks:
            width = lay.width(len(cols))
            kept = _page_lines(grid.notes, worst if numbered else None, width, budget)
            reserved = _notes_height(kept, lay.line_height)
            top = PADDING + reserved + lay.header_height
            for rows in _split_rows(lay, top, max_side, max_rows):
                plans.append((rows, cols, reserved))
        if len(plans) == 1 or numbered:
            break
    pages = []
    for i, (rows, cols, reserved) in enumerate(plans, 1):
        page_line = None
        if len(plans) > 1:
            where = [_span("row", rows, n_rows)]
            if len(column_chunks) > 1:
                where.append(_span("column", cols, n_cols))
            page_line = f"page {i}/{len(plans)} ({', '.join(where)})"
        lines = _page_lines(grid.notes, page_line, lay.width(len(cols)), budget)
        height = max(reserved, _notes_height(lines, lay.line_height))
        pages.append(Page(rows, cols, lines, height))
    return pages


def _draw_lines(draw, x: int, y: int, lines: list[str], lh: int, fill="black") -> None:
    for i, line in enumerate(lines):
        draw.text((x, y + i * lh), line, fill=fill, font=label_font())


def _draw_missing(draw, x: int, y: int, size: int) -> None:
    draw.rectangle([x, y, x + size - 1, y + size - 1], fill=MISSING_FILL, outline="grey")
    draw.line([x, y, x + size - 1, y + size - 1], fill=MISSING_LINE)
    draw.line([x, y + size - 1, x + size - 1, y], fill=MISSING_LINE)
    if _text_width("missing") <= size - 8:
        draw.text((x + 4, y + 4), "missing", fill="dimgrey", font=label_font())


def _header_y(lay: Layout, page: Page) -> int:
    return PADDING + page.notes_height


def tile_origin(lay: Layout, page: Page, row: int, column: int) -> tuple[int, int]:
    """Top-left pixel of the tile of grid row `row` and column `column` on `page`."""
    y = _header_y(lay, page) + lay.header_height
    y += sum(lay.row_heights[r] + PADDING for r in page.rows if r < row)
    x = lay.x0 + (column - page.columns.start) * (lay.cell_size + PADDING)
    return x, y


def render_page(grid: Grid, lay: Layout, page: Page):
    """Draw one page: caption lines, the column header, then its rows."""
    from PIL import Image, ImageDraw

    width = lay.width(len(page.columns))
    header_y = _header_y(lay, page)
    height = header_y + lay.header_height
    height += sum(lay.row_heights[r] + PADDING for r in page.rows)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    size, lh = lay.cell_size, lay.line_height
    _draw_lines(draw, PADDING, PADDING, page.lines, lh)
    for i, c in enumerate(page.columns):
        _draw_lines(draw, lay.x0 + i * (size + PADDING), header_y, lay.column_lines[c], lh)
    y = header_y + lay.header_height
    for r in page.rows:
        _draw_lines(draw, PADDING, y, lay.row_lines[r], lh)
        for i, c in enumerate(page.columns):
            x = lay.x0 + i * (size + PADDING)
            image = _open_tile(grid.tiles.get((r, c)))
            if image is None:
                _draw_missing(draw, x, y, size)
            else:
                tile = fit(image, size)
                canvas.paste(tile, (x + (size - tile.width) // 2, y + (size - tile.height) // 2))
            _draw_lines(draw, x, y + size + 2, lay.caption_lines.get((r, c), []), lh)
        y += lay.row_heights[r] + PADDING
    return canvas


def render_pages(
    grid: Grid, cell_size: int, max_side: int = MAX_SIDE, max_rows: int | None = None
) -> list:
    """Every page of the grid as a PIL image (small grids; `write_grid` streams)."""
    lay = layout(grid, cell_size, max_side)
    return [render_page(grid, lay, page) for page in paginate(grid, lay, max_side, max_rows)]


def page_paths(output: Path, count: int, numbered: bool = False) -> list[Path]:
    """`output` itself for one page (unless `numbered`), else `<stem>-p1.png`, ..."""
    output = Path(output)
    if count == 1 and not numbered:
        return [output]
    return [output.with_name(f"{output.stem}-p{i}.png") for i in range(1, count + 1)]


def count_pages(
    grid: Grid, cell_size: int, max_side: int = MAX_SIDE, max_rows: int | None = None
) -> int:
    return len(paginate(grid, layout(grid, cell_size, max_side), max_side, max_rows))


def write_grid(
    grid: Grid,
    paths: list[Path],
    cell_size: int,
    max_side: int = MAX_SIDE,
    max_rows: int | None = None,
) -> list[Path]:
    """Render page by page and write each atomically to `paths` (one per page)."""
    from t2ibench.io import atomic_write

    lay = layout(grid, cell_size, max_side)
    pages = paginate(grid, lay, max_side, max_rows)
    if len(pages) != len(paths):
        raise ValueError(f"{len(pages)} pages but {len(paths)} paths")
    for page, path in zip(pages, paths, strict=True):
        canvas = render_page(grid, lay, page)
        atomic_write(path, lambda tmp, canvas=canvas: canvas.save(tmp, format="PNG"))
    return list(paths)


def make_grid(
    rows: list[str],
    columns: list[str],
    tiles: dict,
    cell_size: int,
    captions: dict | None = None,
    notes: list[str] | None = None,
):
    """Draw the whole grid as one image (no size cap); `tiles[(row, col)]` is an image
    path, a PIL image, or None for a missing image."""
    grid = Grid(list(rows), list(columns), tiles, captions or {}, notes or [])
    lay = layout(grid, cell_size)
    lines = _note_lines(grid.notes, lay.width(len(columns)))
    page = Page(range(len(rows)), range(len(columns)), lines, _notes_height(lines, lay.line_height))
    return render_page(grid, lay, page)


# ---------------------------------------------------------------- results on disk


def _metric_names() -> list[str]:
    from t2ibench.report.tables import IMAGE_METRICS, PROMPT_METRICS

    return [*IMAGE_METRICS, *PROMPT_METRICS, "generation_seconds"]


def format_metric(name: str, value) -> str:
    """`clip_score 23.41`; values below 1 keep four decimals; an empty value is n/a."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"{name} n/a"
    if math.isnan(number):
        return f"{name} n/a"
    return f"{name} {number:.2f}" if abs(number) >= 1 or not number else f"{name} {number:.4f}"


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if any(v for v in row.values())]


@dataclass
class Results:
    """An experiment's results.csv and metadata.json, indexed by dimension."""

    name: str
    directory: Path
    metadata: dict
    rows: list[dict]

    def __post_init__(self):
        self._index = {}
        for row in self.rows:
            key = (int(row["prompt_index"]), row["cell"], row["model"], int(row["seed"]))
            self._index.setdefault(key, row)

    @property
    def metrics(self) -> list[str]:
        """Metric columns of results.csv with at least one value."""
        return [m for m in _metric_names() if any(row.get(m) for row in self.rows)]

    @functools.cached_property
    def prompts(self) -> dict[int, dict]:
        """Prompt index -> {"id", "text"}: metadata's, then any others in results.csv."""
        found = {int(p["index"]): p for p in self.metadata.get("prompts", [])}
        for row in self.rows:
            found.setdefault(
                int(row["prompt_index"]), {"id": row["prompt_id"], "text": row["prompt_text"]}
            )
        return found

    @functools.cached_property
    def cells(self) -> dict[str, dict]:
        """Cell name -> {"values", "reference"}, in the order of the variables' values."""
        cells = dict(self.metadata.get("cells", {}))
        for row in self.rows:
            cells.setdefault(row["cell"], {"values": {}})
        variables = self.metadata.get("variables", {})

        def order(name):
            values = cells[name].get("values", {})
            ranks = []
            for axis, options in variables.items():
                options = [str(o) for o in options]
                value = str(values.get(axis))
                ranks.append(options.index(value) if value in options else len(options))
            return (ranks, name)

        return {name: cells[name] for name in sorted(cells, key=order)}

    def keys(self, dimension: str) -> list:
        """Every key of a dimension, in the experiment's order."""
        if dimension == "prompt":
            return sorted(self.prompts)
        if dimension == "cell":
            return list(self.cells)
        if dimension == "model":
            names = [m["name"] for m in self.metadata.get("models", [])]
            return list(dict.fromkeys(names + [row["model"] for row in self.rows]))
        seeds = [int(s) for s in self.metadata.get("seeds", [])]
        return list(dict.fromkeys(seeds + sorted(int(row["seed"]) for row in self.rows)))

    @property
    def reference_cell(self) -> str | None:
        return self.metadata.get("reference_cell")

    def cell_values(self, cell: str) -> str:
        """`shift=1.0, steps=4`; the cell's name when it has no values (the baseline)."""
        values = self.cells.get(cell, {}).get("values") or {}
        return ", ".join(f"{k}={v}" for k, v in values.items()) or cell

    def label(self, axis: str, key) -> str:
        """A key as shown on an axis of the grid."""
        if axis == "prompts":
            prompt = self.prompts[key]
            return f"{prompt['id']}: {prompt['text']}"
        if axis in ("values", "cells"):
            text = self.cell_values(key) if axis == "values" else key
            if len(self.cells) > 1 and key == self.reference_cell:
                text += " (reference)"
            return text
        if axis == "seeds":
            return f"seed {key}"
        return str(key)

    def short_label(self, dimension: str, key) -> str:
        """A key named in a caption line."""
        if dimension == "prompt":
            return f"{self.prompts[key]['id']} (#{key})"
        if dimension == "cell":
            values = self.cell_values(key)
            return key if values == key else f"{key} ({values})"
        return str(key)

    def row(self, prompt: int, cell: str, model: str, seed: int) -> dict | None:
        return self._index.get((prompt, cell, model, seed))

    def image(self, row: dict | None) -> Path | None:
        """The image of a results row, or None. image_path is relative to the working
        directory of the run; when that is not here, it is found under this experiment's
        folder instead (the part of the path after the experiment's name)."""
        if not row or not row.get("image_path"):
            return None
        path = Path(row["image_path"])
        parts, leaf = path.parts, Path(self.name).name
        for i, part in enumerate(parts):
            if part == leaf:
                candidate = self.directory.joinpath(*parts[i + 1 :])
                if candidate.exists():
                    return candidate
        return path if path.exists() else None


def find_experiments(results_dir: Path) -> list[str]:
    """Experiments with a metadata.json: `<name>`, and `prompt-<hash>/<name>` for the
    results of a custom prompt, sorted."""
    results_dir = Path(results_dir)
    found = [p.parent for p in results_dir.glob("*/metadata.json")]
    found += [p.parent for p in results_dir.glob("prompt-*/*/metadata.json")]
    return sorted(p.relative_to(results_dir).as_posix() for p in found)


def known_list(items, limit: int = 12) -> str:
    """`a, b, c` or, past `limit` items, `a, b, ... (40 in all)`."""
    items = [str(i) for i in items]
    if len(items) <= limit:
        return ", ".join(items) or "none"
    return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"


def load_results(results_dir: Path, experiment: str, require_images: bool = True) -> Results:
    """Read results/<experiment>/metadata.json and results.csv.

    Unknown experiment, and (with `require_images`) no images yet, are InputErrors.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"results directory '{results_dir}' not found; run snakemake first")
    directory = results_dir / experiment
    meta_path = directory / "metadata.json"
    if ".." in Path(experiment).parts or not meta_path.is_file():
        known = find_experiments(results_dir)
        if not known:
            raise InputError(f"no experiments in '{results_dir}' yet (no */metadata.json)")
        raise InputError(
            f"unknown experiment '{experiment}' in '{results_dir}'; known: {known_list(known)}"
        )
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise InputError(f"{meta_path}: not valid JSON ({err})") from None
    table = directory / "results.csv"
    rows = _read_rows(table)
    if require_images and not rows:
        why = "is missing" if not table.exists() else "has no rows"
        raise InputError(f"experiment '{experiment}' has no images yet: {table} {why}")
    try:
        return Results(experiment, directory, metadata, rows)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{table}: unreadable row (column {err}); rerun the workflow") from None


def _fixed_dimensions(results: Results, shown: set[str], filters: dict) -> tuple[dict, list]:
    """Fix each dimension not shown to its first candidate; caption lines saying which."""
    fixed, notes = {}, []
    for dim in DIMENSIONS:
        if dim in shown:
            continue
        candidates = filters.get(dim) or results.keys(dim)
        if not candidates:
            raise InputError(f"experiment '{results.name}' has no {dim}s")
        fixed[dim] = candidates[0]
        note = f"{dim}: {results.short_label(dim, candidates[0])}"
        if len(candidates) > 1:
            note += f" (first of {len(candidates)}; pick one with compare {OPTION[dim]})"
        notes.append(note)
    return fixed, notes


def check_axes(rows: str, cols: str) -> None:
    for axis in (rows, cols):
        if axis not in AXES:
            raise InputError(f"unknown axis '{axis}'; axes: {', '.join(AXES)}")
    if AXIS_DIMENSION[rows] == AXIS_DIMENSION[cols]:
        raise InputError(f"rows '{rows}' and columns '{cols}' are the same dimension")


def default_columns(results: Results) -> str:
    """`values`, or `models` when there is one cell and several models (the baseline)."""
    if len(results.keys("cell")) == 1 and len(results.keys("model")) > 1:
        return "models"
    return "values"


def axis_grid(
    results: Results,
    rows: str = "prompts",
    cols: str | None = None,
    filters: dict | None = None,
    metric: str | None = None,
) -> Grid:
    """The grid of two axes: keys of each shown axis (filtered), the others fixed."""
    cols = cols or default_columns(results)
    check_axes(rows, cols)
    filters = filters or {}
    if metric is not None and metric not in results.metrics:
        raise InputError(
            f"unknown metric '{metric}' for experiment '{results.name}'; "
            f"metrics: {known_list(results.metrics)}"
        )
    row_dim, col_dim = AXIS_DIMENSION[rows], AXIS_DIMENSION[cols]
    row_keys = filters.get(row_dim) or results.keys(row_dim)
    col_keys = filters.get(col_dim) or results.keys(col_dim)
    fixed, notes = _fixed_dimensions(results, {row_dim, col_dim}, filters)
    title = f"{results.name}: {rows} (rows) x {cols} (columns)"
    if metric:
        title += f"; under each image: {metric}"
    grid = Grid(
        [results.label(rows, k) for k in row_keys],
        [results.label(cols, k) for k in col_keys],
        notes=[title, *notes],
    )
    for (r, row_key), (c, col_key) in itertools.product(enumerate(row_keys), enumerate(col_keys)):
        key = dict(fixed, **{row_dim: row_key, col_dim: col_key})
        found = results.row(key["prompt"], key["cell"], key["model"], key["seed"])
        grid.tiles[(r, c)] = results.image(found)
        if metric:
            grid.captions[(r, c)] = format_metric(metric, (found or {}).get(metric))
    return grid


_PAGE_NAME = re.compile(r"^grid(-models)?-p\d+\.png$")


def experiment_grid_pages(
    results_dir: Path,
    experiment: str,
    out_dir: Path,
    cell_size: int = 256,
    metric: str | None = "clip_score",
    max_side: int = MAX_SIDE,
) -> list[Path]:
    """The workflow's grids, from results on disk, as numbered pages in `out_dir`.

    `grid-p1.png`, ...: prompts x values (the baseline: prompts x models), first seed;
    `grid-models-p1.png`, ...: models x values, first prompt and seed, when the
    experiment has several models and several cells. `metric` is drawn under each
    image when results.csv has it (a caption line says when it does not). Earlier
    pages of these names that this run does not write are removed. Returns the paths.
    """
    results = load_results(Path(results_dir), experiment, require_images=False)
    out_dir = Path(out_dir)
    if metric is not None and metric not in results.metrics:
        note, metric = f"{metric}: not in results.csv", None
    else:
        note = None
    figures = [("grid", axis_grid(results, "prompts", None, {}, metric))]
    if len(results.keys("model")) > 1 and len(results.keys("cell")) > 1:
        figures.append(("grid-models", axis_grid(results, "models", "values", {}, metric)))
    written = []
    for stem, grid in figures:
        if note:
            grid.notes.append(note)
        if not results.rows:
            grid.notes.append("no images yet: results.csv is missing or empty")
        paths = page_paths(out_dir / f"{stem}.png", count_pages(grid, cell_size, max_side), True)
        written += write_grid(grid, paths, cell_size, max_side)
    if out_dir.is_dir():
        for stale in sorted(out_dir.iterdir()):
            if _PAGE_NAME.match(stale.name) and stale not in written:
                stale.unlink()
    return written
