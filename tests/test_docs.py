"""The documentation keeps up with the code: every config key is in the configuration
reference with its schema default, every docs page is reachable from the README, every
relative link (and its #anchor) resolves, and the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
CONFIG_PAGE = DOCS / "configuration.md"
SCHEMA = REPO / "config" / "schema.yaml"
MAX_README_LINES = 220
NO_DEFAULT = "—"  # the default column of a key without a default

# A row of the configuration tables: | `key.path` | type | default | meaning |
KEY_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`]*`")  # a code span may run over a line break
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)


def schema_keys(node: dict, prefix: str = "") -> dict[str, dict]:
    """Every key path of the schema and its schema: `metrics.clip.batch_size`, and
    `models[].vae` for a key of each entry of a list of mappings."""
    keys = {}
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        keys[path] = sub
        keys.update(schema_keys(sub, path))
        items = sub.get("items")
        if isinstance(items, dict):
            keys.update(schema_keys(items, f"{path}[]"))
    return keys


def documented_rows() -> dict[str, list[list[str]]]:
    """The configuration tables' rows by key path: each row's cells."""
    rows: dict[str, list[list[str]]] = {}
    for line in CONFIG_PAGE.read_text(encoding="utf-8").splitlines():
        match = KEY_ROW.match(line)
        if match:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows.setdefault(match.group(1), []).append(cells)
    return rows


@pytest.fixture(scope="module")
def schema() -> dict[str, dict]:
    from t2ibench.config import load_schema

    return schema_keys(load_schema())  # with the metrics' sections from their registry


@pytest.fixture(scope="module")
def rows() -> dict[str, list[list[str]]]:
    return documented_rows()


def test_schema_walk_finds_nested_and_list_keys(schema):
    assert {"metrics.clip.batch_size", "models[].vae", "generation.hidden_layer_blend"} <= set(
        schema
    )
    assert "generation.hidden_layer_blend.-2" not in schema  # a mapping of weights: a leaf


def test_every_config_key_is_documented(schema, rows):
    missing = sorted(set(schema) - set(rows))
    assert not missing, f"keys of config/schema.yaml without a row in {CONFIG_PAGE.name}"


def test_every_documented_key_exists(schema, rows):
    unknown = sorted(set(rows) - set(schema))
    assert not unknown, f"rows of {CONFIG_PAGE.name} for keys config/schema.yaml lacks"


def test_each_key_has_one_row_of_four_cells(rows):
    twice = sorted(key for key, found in rows.items() if len(found) > 1)
    assert not twice, "keys with more than one row"
    malformed = sorted(key for key, found in rows.items() if len(found[0]) != 4)
    assert not malformed, "rows without exactly key | type | default | meaning"


def test_documented_defaults_are_the_schema_defaults(schema, rows):
    wrong = []
    for key, found in rows.items():
        if key not in schema or len(found[0]) != 4:
            continue  # reported by the tests above
        cell = found[0][2]
        if cell == NO_DEFAULT:
            if "default" in schema[key]:
                wrong.append(f"{key}: documented without a default, schema has one")
            continue
        if "default" not in schema[key]:
            wrong.append(f"{key}: documented default {cell}, schema has none")
            continue
        value = yaml.safe_load(cell.strip("`"))
        if value != schema[key]["default"] or type(value) is not type(schema[key]["default"]):
            wrong.append(f"{key}: documented {cell}, schema {schema[key]['default']!r}")
    assert not wrong


def doc_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def prose(path: Path) -> str:
    """The page without code blocks and inline code (no links are read from those)."""
    return INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for _, heading in HEADING.findall(text):
        base = slug(heading)
        name, n = base, 0
        while name in found:
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def relative_links(path: Path) -> list[tuple[str, Path, str]]:
    """(link as written, file it points to, #anchor or '') of each relative link."""
    links = []
    for target in LINK.findall(prose(path)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path.resolve()
        links.append((target, resolved, anchor))
    return links


def test_there_are_docs_pages():
    assert CONFIG_PAGE in doc_pages()
    assert len(doc_pages()) >= 5


def test_readme_links_every_docs_page():
    linked = {resolved for _, resolved, _ in relative_links(README)}
    unlinked = [p.name for p in doc_pages() if p.resolve() not in linked]
    assert not unlinked, "docs pages the README does not link"


@pytest.mark.parametrize("page", [README, *doc_pages()], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    broken = []
    for target, resolved, anchor in relative_links(page):
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"broken links in {page.relative_to(REPO)}"


def test_slug_follows_github():
    assert slug("Running: checks before anything runs") == "running-checks-before-anything-runs"
    assert slug("`models`") == "models"
    assert slug("Several GPUs on one machine") == "several-gpus-on-one-machine"
    assert slug("One run at a time (per results folder)") == "one-run-at-a-time-per-results-folder"


def test_readme_is_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/"
