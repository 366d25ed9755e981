"""`python scripts/cli.py compare`: look at and compare an experiment's images on disk.

Only the results are read (results/<experiment>/metadata.json and results.csv, through
report.results), never the plan, so it works on a copied results folder and while a run
goes on. An experiment is named as `--list` shows it: `shift_sweep`, or
`prompt-1a2b3c4d/baseline` for the results of a custom prompt.

    --list            experiments found: description, models, cells, images
    --info            one experiment: variables, reference cell, models, prompts, seeds
    --mode grid       two axes (--rows, --cols), the others fixed (see report.grid)
    --mode side-by-side   the selected images in one labelled row (wrapping past
                      PER_ROW); unfiltered prompt and seed are the first, unfiltered
                      models and cells are all
    --mode diff       exactly two selected images, A and B, and their difference

Filters (comma lists, repeatable, kept in the order given): --prompt (id or index),
--values (cell name, a value such as 3.0, or axis=value; all cells that match),
--seed, --model. Every check runs before anything is written: bad input writes no
file. Without -o the output is `<experiment>-<mode>.png` in the current directory,
numbered (`-2`, `-3`, ...) rather than overwriting an existing file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.report.grid import OPTION, axis_grid
from t2ibench.report.grid_render import (
    MAX_SIDE,
    Grid,
    count_pages,
    label_font,
    page_paths,
    write_grid,
)
from t2ibench.report.results import (
    Results,
    find_experiments,
    known_list,
    load_results,
    tile_caption,
)

MODES = ("grid", "side-by-side", "diff")
DIFF_MODES = ("highlight", "absolute", "heatmap")
PER_ROW = 6
THRESHOLD = 16
HIGHLIGHT = (255, 0, 0)
# Inferno-like colormap anchors: 0 (no difference) is near black, the maximum pale yellow.
HEATMAP_ANCHORS = [
    (0.0, (0, 0, 4)),
    (0.25, (87, 16, 110)),
    (0.5, (188, 55, 84)),
    (0.75, (249, 142, 9)),
    (1.0, (252, 255, 164)),
]


@dataclass
class CompareRequest:
    """What to compare and where to write it (the CLI's options)."""

    experiment: str
    mode: str = "grid"
    rows: str | None = None
    cols: str | None = None
    prompts: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    seeds: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    metric: str | None = None
    diff_mode: str = "highlight"
    threshold: int = THRESHOLD
    resize: bool = False
    output: Path | None = None
    cell_size: int = 256
    max_side: int = MAX_SIDE
    max_rows: int | None = None
    per_row: int = PER_ROW


# ---------------------------------------------------------------- list and info


def list_experiments(results_dir: Path, out) -> None:
    """Each experiment with a metadata.json: description, models, cells, images."""
    results_dir = Path(results_dir)
    names = find_experiments(results_dir) if results_dir.is_dir() else []
    if not names:
        print(f"no experiments in '{results_dir}' yet (no */metadata.json)", file=out)
        return
    for name in names:
        results = load_results(results_dir, name, require_images=False)
        print(name, file=out)
        print(f"    {results.metadata.get('description', '')}", file=out)
        print(f"    models: {', '.join(results.keys('model'))}", file=out)
        cells = results.keys("cell")
        print(f"    cells: {len(cells)} ({known_list(cells, 6)})", file=out)
        print(f"    images: {len(results.rows)}\n", file=out)


def experiment_info(results_dir: Path, experiment: str, out) -> None:
    """Description, variables and values, reference cell, models, prompts, seeds,
    image count and the metrics available."""
    import textwrap

    results = load_results(Path(results_dir), experiment, require_images=False)
    meta = results.metadata
    print(experiment, file=out)
    print(f"    {meta.get('description', '')}", file=out)
    for axis, values in (meta.get("variables") or {}).items():
        print(f"    variable {axis}: {', '.join(str(v) for v in values)}", file=out)
    cells = results.keys("cell")
    print(f"    cells: {len(cells)}; reference: {results.reference_cell}", file=out)
    print(f"    models: {', '.join(results.keys('model'))}", file=out)
    ids = [results.prompts[i]["id"] for i in results.keys("prompt")]
    prompts = textwrap.fill(", ".join(ids), 88, initial_indent=" " * 8, subsequent_indent=" " * 8)
    print(f"    prompts ({len(ids)}):\n{prompts}", file=out)
    print(f"    seeds: {', '.join(str(s) for s in results.keys('seed'))}", file=out)
    on_disk = sum(results.image(row) is not None for row in results.rows)
    print(f"    images: {len(results.rows)} in results.csv ({on_disk} on disk)", file=out)
    print(f"    metrics: {', '.join(results.metrics) or 'none yet'}", file=out)


# ---------------------------------------------------------------- filters


def split_list(items) -> list[str]:
    """Repeatable, comma-separated options as one list, blanks dropped, order kept."""
    out = []
    for item in items or []:
        out += [part.strip() for part in str(item).split(",") if part.strip()]
    return list(dict.fromkeys(out))


def _unknown(results: Results, what: str, token: str, valid) -> InputError:
    return InputError(
        f"unknown {what} '{token}' in experiment '{results.name}'; valid: {known_list(valid)}"
    )


def _match_prompt(results: Results, token: str) -> int:
    for index, prompt in results.prompts.items():
        if prompt["id"] == token:
            return index
    if token.lstrip("-").isdigit() and int(token) in results.prompts:
        return int(token)
    ids = [f"{results.prompts[i]['id']} ({i})" for i in results.keys("prompt")]
    raise _unknown(results, "prompt", token, ids)


def _same_value(a, b) -> bool:
    if str(a) == str(b):
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _match_values(results: Results, token: str) -> list[str]:
    """Cells named `token`, or with a value equal to it (`3.0`, or `shift=3.0`)."""
    if token in results.cells:
        return [token]
    axis, _, value = token.rpartition("=")
    matches = []
    for name, cell in results.cells.items():
        values = cell.get("values") or {}
        items = [(axis, values[axis])] if axis in values else [] if axis else values.items()
        if any(_same_value(v, value) for _, v in items):
            matches.append(name)
    if not matches:
        valid = [f"{name} ({results.cell_values(name)})" for name in results.cells]
        raise _unknown(results, "value", token, valid)
    return matches


def _match_seed(results: Results, token: str) -> int:
    seeds = results.keys("seed")
    if token.lstrip("-").isdigit() and int(token) in seeds:
        return int(token)
    raise _unknown(results, "seed", token, seeds)


def _match_model(results: Results, token: str) -> str:
    if token in results.keys("model"):
        return token
    raise _unknown(results, "model", token, results.keys("model"))


def resolve_filters(results: Results, request: CompareRequest) -> dict:
    """Dimension -> chosen keys (in the order given); unknown names are InputErrors."""
    filters = {
        "prompt": [_match_prompt(results, t) for t in split_list(request.prompts)],
        "cell": [c for t in split_list(request.values) for c in _match_values(results, t)],
        "seed": [_match_seed(results, t) for t in split_list(request.seeds)],
        "model": [_match_model(results, t) for t in split_list(request.models)],
    }
    return {dim: list(dict.fromkeys(keys)) for dim, keys in filters.items() if keys}


# ---------------------------------------------------------------- selections


@dataclass
class Selected:
    """One selected image: its keys, label, results row and path."""

    key: dict
    label: str
    row: dict | None
    path: Path | None


def select_images(results: Results, filters: dict) -> tuple[list[Selected], list[str]]:
    """Images for side-by-side and diff: the chosen keys of every dimension; without a
    filter the first prompt and seed, and every model and cell. Each image is labelled
    by the dimensions that vary; the fixed ones make the caption lines."""
    choices = {}
    for dim in ("prompt", "model", "cell", "seed"):
        keys = filters.get(dim) or results.keys(dim)
        choices[dim] = keys if dim in filters or dim in ("model", "cell") else keys[:1]
    notes = []
    for dim, keys in choices.items():
        if len(keys) == 1:
            note = f"{dim}: {results.short_label(dim, keys[0])}"
            total = len(results.keys(dim))
            if dim not in filters and total > 1:
                note += f" (first of {total}; pick one with {OPTION[dim]})"
            notes.append(note)
    varying = [dim for dim, keys in choices.items() if len(keys) > 1]
    selected = []
    for prompt in choices["prompt"]:
        for model in choices["model"]:
            for cell in choices["cell"]:
                for seed in choices["seed"]:
                    key = {"prompt": prompt, "model": model, "cell": cell, "seed": seed}
                    label = " / ".join(results.short_label(d, key[d]) for d in varying)
                    row = results.row(prompt, cell, model, seed)
                    selected.append(Selected(key, label, row, results.image(row)))
    return selected, notes


def side_by_side_grid(results: Results, filters: dict, request: CompareRequest) -> Grid:
    """The selected images in rows of `per_row`, each labelled (and its metric)."""
    selected, notes = select_images(results, filters)
    per_row = max(1, request.per_row)
    n_rows = -(-len(selected) // per_row)
    width = min(per_row, len(selected))
    title = f"{results.name}: side by side, {len(selected)} images"
    grid = Grid([""] * n_rows, [""] * width, notes=[title, *notes])
    for i, item in enumerate(selected):
        where = divmod(i, per_row)
        grid.tiles[where] = item.path
        caption = item.label or results.short_label("cell", item.key["cell"])
        if request.metric:
            caption += "\n" + tile_caption(request.metric, item.row, item.path)
        grid.captions[where] = caption
    return grid


# ---------------------------------------------------------------- diff


def _colormap(t):
    """Values in [0, 1] (array) -> RGB uint8 through HEATMAP_ANCHORS."""
    import numpy as np

    stops = [s for s, _ in HEATMAP_ANCHORS]
    channels = [np.interp(t, stops, [c[i] for _, c in HEATMAP_ANCHORS]) for i in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def diff_image(a, b, mode: str = "highlight", threshold: int = THRESHOLD):
    """The difference of two same-size RGB images: (image, description, mean |A-B|).

    highlight: pixels whose largest channel difference exceeds `threshold` painted red
    over a grey copy of A; absolute: |A-B| per channel scaled so its maximum is 255;
    heatmap: the mean channel difference per pixel, scaled by its maximum, through an
    inferno-like colormap (see `colour_bar`). Mean |A-B| is over pixels and channels,
    out of 255.
    """
    import numpy as np
    from PIL import Image

    if mode not in DIFF_MODES:
        raise InputError(f"unknown diff mode '{mode}'; modes: {', '.join(DIFF_MODES)}")
    if a.size != b.size:
        raise InputError(f"images differ in size: A {_size(a)}, B {_size(b)}")
    pa = np.asarray(a.convert("RGB"), dtype=np.int16)
    pb = np.asarray(b.convert("RGB"), dtype=np.int16)
    delta = np.abs(pa - pb)
    mean = float(delta.mean())
    peak = int(delta.max())
    if mode == "highlight":
        grey = np.asarray(a.convert("L"), dtype=np.uint8)
        out = np.repeat(grey[:, :, None], 3, axis=2)
        changed = delta.max(axis=2) > threshold
        out[changed] = HIGHLIGHT
        share = 100 * float(changed.mean())
        text = f"highlight: red where |A-B| > {threshold} ({share:.2f}% of pixels)"
    elif mode == "absolute":
        scale = 255 / peak if peak else 1.0
        out = np.clip(np.round(delta * scale), 0, 255).astype(np.uint8)
        text = f"absolute: |A-B| x {scale:.2f} (max difference {peak} shown as 255)"
    else:
        magnitude = delta.mean(axis=2)
        top = float(magnitude.max())
        out = _colormap(magnitude / top if top else magnitude)
        text = f"heatmap: mean |A-B| over RGB, colour scale 0 to {top:.1f} (of 255)"
    return Image.fromarray(out, "RGB"), f"{text}; mean |A-B| {mean:.2f} of 255", mean


def colour_bar(top: float, size: int):
    """A size x size tile: the heatmap's colour scale from 0 (bottom) to `top`."""
    import numpy as np
    from PIL import Image, ImageDraw

    bar = max(8, size // 4)
    t = np.linspace(1, 0, size)[:, None].repeat(bar, axis=1)
    canvas = Image.new("RGB", (size, size), "white")
    canvas.paste(Image.fromarray(_colormap(t), "RGB"), (4, 0))
    draw = ImageDraw.Draw(canvas)
    font = label_font()
    for frac, value in ((0.0, top), (0.5, top / 2), (1.0, 0.0)):
        y = min(size - 16, int(frac * (size - 1)))
        draw.text((bar + 10, y), f"{value:.1f}", fill="black", font=font)
    return canvas


def _size(image) -> str:
    return f"{image.width}x{image.height}"


def _open(item: Selected):
    from PIL import Image

    if item.path is None:
        raise InputError(f"image {item.label or item.key} is missing on disk")
    try:
        with Image.open(item.path) as img:
            return img.convert("RGB")
    except (OSError, ValueError):
        raise InputError(f"cannot read image {item.path}") from None


def diff_grid(results: Results, filters: dict, request: CompareRequest) -> Grid:
    """A, B and their difference side by side (plus the colour bar for heatmap)."""
    from PIL import Image

    selected, notes = select_images(results, filters)
    if len(selected) != 2:
        labels = known_list([s.label or s.key["cell"] for s in selected], 6)
        raise InputError(
            f"diff needs exactly two images, the selection has {len(selected)} ({labels}); "
            "choose two with --values A,B, --model A,B, --prompt A,B or --seed A,B"
        )
    first, second = selected
    a, b = _open(first), _open(second)
    label_b = f"B: {second.label}"
    if a.size != b.size:
        if not request.resize:
            raise InputError(
                f"images differ in size: A ({first.label}) {_size(a)}, B ({second.label}) "
                f"{_size(b)}; pass --resize to resize B to A's size"
            )
        label_b += f" (resized from {_size(b)} to {_size(a)})"
        b = b.resize(a.size, Image.Resampling.LANCZOS)
    image, text, _ = diff_image(a, b, request.diff_mode, request.threshold)
    tiles = [a, b, image]
    captions = [f"A: {first.label}", label_b, text]
    if request.diff_mode == "heatmap":
        import numpy as np

        delta = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
        tiles.append(colour_bar(float(delta.mean(axis=2).max()), request.cell_size))
        captions.append("colour bar: mean |A-B| (of 255)")
    title = f"{results.name}: diff ({request.diff_mode})"
    grid = Grid([""], [""] * len(tiles), notes=[title, *notes])
    for c, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        grid.tiles[(0, c)] = tile
        grid.captions[(0, c)] = caption
    return grid


# ---------------------------------------------------------------- output


def output_paths(request: CompareRequest, pages: int, directory: Path = Path(".")) -> list[Path]:
    """Where the pages go: -o FILE (overwritten; pages FILE-p1.png, ...), else a new
    `<experiment>-<mode>[-N].png` in `directory` that overwrites nothing."""
    if request.output is not None:
        output = Path(request.output)
        if output.suffix.lower() != ".png":
            raise InputError(f"-o {output}: the output is a PNG file; give a name ending .png")
        if output.is_dir():
            raise InputError(f"-o {output}: is a directory; give a file name ending .png")
        return page_paths(output, pages)
    mode = request.mode + (f"-{request.diff_mode}" if request.mode == "diff" else "")
    stem = f"{request.experiment.replace('/', '_')}-{mode}"
    for n in range(1, 10000):
        name = stem if n == 1 else f"{stem}-{n}"
        paths = page_paths(Path(directory) / f"{name}.png", pages)
        if not any(p.exists() for p in paths):
            return paths
    raise InputError(f"too many files named {stem}-N.png in {directory}")


def build_grid(results: Results, request: CompareRequest) -> Grid:
    """The figure of the request's mode; every input check happens here."""
    if request.mode not in MODES:
        raise InputError(f"unknown mode '{request.mode}'; modes: {', '.join(MODES)}")
    if request.mode != "grid" and (request.rows or request.cols):
        raise InputError("--rows and --cols apply to --mode grid only")
    filters = resolve_filters(results, request)
    if request.metric is not None and request.metric not in results.metrics:
        raise InputError(
            f"unknown metric '{request.metric}' for experiment '{results.name}'; "
            f"metrics: {known_list(results.metrics)}"
        )
    if request.mode == "grid":
        return axis_grid(results, request.rows or "prompts", request.cols, filters, request.metric)
    if request.mode == "side-by-side":
        return side_by_side_grid(results, filters, request)
    return diff_grid(results, filters, request)


def run_compare(results_dir: Path, request: CompareRequest, directory: Path = Path(".")):
    """Check everything, then write the figure's pages; returns the paths written."""
    results = load_results(Path(results_dir), request.experiment)
    if request.cell_size < 16:
        raise InputError(f"--cell-size {request.cell_size}: at least 16 px")
    grid = build_grid(results, request)
    pages = count_pages(grid, request.cell_size, request.max_side, request.max_rows)
    paths = output_paths(request, pages, directory)
    return write_grid(grid, paths, request.cell_size, request.max_side, request.max_rows)
