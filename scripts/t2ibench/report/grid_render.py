"""Drawing, layout and paging of labelled image grids (see t2ibench.report.grid for what
the workflow's and compare's grids show).

A `Grid` says what is shown (labels, tiles, captions, caption lines above it); `layout`
measures it at a tile size; `paginate` splits it into `Page`s within a size cap;
`render_page` draws one page; `write_grid` writes every page.

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

Missing images (no tile, or the file is gone or unreadable) are drawn as a grey tile
with a cross and the word "missing".
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

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
