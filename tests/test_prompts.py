"""Prompt sources, their order, filters and every bad prompt input."""

from __future__ import annotations

import json

import pytest

from t2ibench.errors import InputError
from t2ibench.prompts import load_json_set, load_prompts, load_txt_lines

REQUIRED = {"text", "category", "complexity", "subjects", "environment"}


def cfg(*sources, **filters):
    return {
        "sources": [str(s) for s in sources],
        "num_prompts": None,
        "ids": [],
        "categories": [],
        **filters,
    }


def test_shipped_sets_are_well_formed(repo):
    ids = set()
    for name in ["animals", "simple", "complex", "styles", "technical"]:
        data = json.loads((repo / "prompts" / f"{name}.json").read_text(encoding="utf-8"))
        assert len(data) >= 10
        for pid, entry in data.items():
            assert REQUIRED <= set(entry), pid
            assert entry["text"].strip() and entry["category"] == name
            assert pid not in ids
            ids.add(pid)
    prompts = load_prompts(cfg(*(repo / "prompts" / f"{n}.json" for n in ["simple", "animals"])))
    assert [p.id for p in prompts[:2]] == ["simple_001", "simple_002"]
    assert prompts[12].id == "animals_001"


def test_a_prompt_with_an_earlier_prompts_text_is_left_out_with_a_warning(tmp_path, caplog):
    """The same text makes the same images: kept twice, the findings would count one
    prompt's evidence twice. The later one is left out (named), the indices stay."""
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"x1": {"text": "a red fox"}, "x2": {"text": "a blue car"}}))
    b = tmp_path / "b.txt"
    b.write_text("a red fox\na green tree\n")
    with caplog.at_level("WARNING", logger="t2ibench"):
        prompts = load_prompts(cfg(a, b))
    assert [(p.id, p.index) for p in prompts] == [("x1", 0), ("x2", 1), ("b_002", 3)]
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"prompt 'b_001' ({b}) has the text of 'x1' ({a}): left out")
    assert [p.id for p in load_prompts(cfg(a, b, num_prompts=3))] == ["x1", "x2", "b_002"]


def test_a_control_character_in_a_prompt_is_refused(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"x1": {"text": "a red\u0000 fox"}}))
    with pytest.raises(InputError, match=r"prompt 'x1' in .+ holds the control character U\+0000"):
        load_prompts(cfg(a))
    a.write_text(json.dumps({"x1": {"text": "a red fox,\n\tin snow"}}))  # lines and tabs: text
    assert load_prompts(cfg(a))[0].text == "a red fox,\n\tin snow"


def test_the_shipped_prompts_have_no_text_twice(repo):
    """The demo loads several sets at once: none repeats another's text."""
    sources = [*sorted((repo / "prompts").glob("*.json")), repo / "prompts" / "paired"]
    texts = [p.text for p in load_prompts(cfg(*sources))]
    every = sum(len(load_prompts(cfg(source))) for source in sources)
    assert len(texts) == every


def test_order_and_filters(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(
        json.dumps(
            {
                "z": {"text": "zebra", "category": "animals"},
                "m": {"text": "moon", "category": "space"},
                "c": {"text": "cat", "category": "animals"},
            }
        )
    )
    b = tmp_path / "b.txt"
    b.write_text("first line\n\n# a comment\nsecond line\n")
    assert [p.id for p in load_prompts(cfg(a, b))] == ["z", "m", "c", "b_001", "b_004"]
    assert [p.id for p in load_prompts(cfg(b, a))][:2] == ["b_001", "b_004"]
    assert [p.id for p in load_prompts(cfg(a, b, categories=["animals"]))] == ["z", "c"]
    # ids keep source order, not the order of the filter list
    assert [p.id for p in load_prompts(cfg(a, b, ids=["c", "z"]))] == ["z", "c"]
    assert [p.id for p in load_prompts(cfg(a, b, num_prompts=2))] == ["z", "m"]
    assert [p.id for p in load_prompts(cfg(a, categories=["animals"], num_prompts=1))] == ["z"]


def test_paired_folder_and_separate_folders(tmp_path):
    from PIL import Image

    paired = tmp_path / "pairs"
    paired.mkdir()
    for stem, text in [("b_img", "a boat"), ("a_img", "an apple")]:
        Image.new("RGB", (8, 8)).save(paired / f"{stem}.png")
        (paired / f"{stem}.txt").write_text(text + "\n")
    (paired / "c_only.txt").write_text("text without image")
    prompts = load_prompts(cfg(paired))
    assert [(p.id, p.text) for p in prompts] == [
        ("a_img", "an apple"),
        ("b_img", "a boat"),
        ("c_only", "text without image"),
    ]
    assert prompts[0].reference_image.endswith("a_img.png")
    assert prompts[2].reference_image is None


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda d: (d / "p.json").write_text("{not json"), "p.json: not valid JSON"),
        (lambda d: (d / "p.json").write_text("[1, 2]"), "p.json: expected an object"),
        (
            lambda d: (d / "p.json").write_text('{"x": {"category": "c"}}'),
            "entry 'x' needs a 'text'",
        ),
        (lambda d: (d / "p.json").write_text("{}"), "prompt set is empty"),
    ],
)
def test_bad_prompt_files(tmp_path, setup, expected):
    setup(tmp_path)
    with pytest.raises(InputError, match=expected):
        load_prompts(cfg(tmp_path / "p.json"))


def test_duplicate_ids_name_both_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"x": {"text": "one"}}))
    (tmp_path / "b.json").write_text(json.dumps({"x": {"text": "two"}}))
    with pytest.raises(InputError, match=r"duplicate prompt id 'x' in .*b.json .*a.json"):
        load_prompts(cfg(tmp_path / "a.json", tmp_path / "b.json"))


def test_paired_image_without_txt(tmp_path):
    from PIL import Image

    (tmp_path / "one.txt").write_text("one")
    Image.new("RGB", (8, 8)).save(tmp_path / "two.jpg")
    with pytest.raises(
        InputError, match=r"paired image .*two.jpg: missing its prompt file .*two.txt"
    ):
        load_prompts(cfg(tmp_path))


def test_empty_after_filters_and_missing_source(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"x": {"text": "one", "category": "c"}}))
    with pytest.raises(InputError, match="prompt set is empty"):
        load_prompts(cfg(tmp_path / "a.json", categories=["nope"]))
    with pytest.raises(InputError, match="unknown prompt id 'y'"):
        load_prompts(cfg(tmp_path / "a.json", ids=["y"]))
    with pytest.raises(InputError, match="nothere.json does not exist"):
        load_prompts(cfg(tmp_path / "nothere.json"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="prompt set is empty"):
        load_prompts(cfg(empty))


def test_reference_images_folder_is_loaded_independently(base_config, tmp_path):
    from PIL import Image

    from t2ibench.config import validate_config
    from t2ibench.plan import build_plan

    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ["b.png", "a.jpg", "notes.txt"]:
        if name.endswith(".txt"):
            (refs / name).write_text("not an image")
        else:
            Image.new("RGB", (8, 8)).save(refs / name)
    base_config["prompts"]["reference_images"] = str(refs)
    plan = build_plan(validate_config(base_config))
    assert [p.rsplit("/", 1)[1] for p in plan.reference_images] == ["a.jpg", "b.png"]
    assert all(p.reference_image is None for p in plan.experiments["baseline"].prompts)
    base_config["prompts"]["reference_images"] = str(tmp_path / "missing")
    with pytest.raises(InputError, match="'prompts.reference_images': .*missing is not a folder"):
        build_plan(validate_config(base_config))


def test_a_prompt_id_given_twice_in_a_json_set_is_refused(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"a": "one", "b": {"text": "two"}, "a": "three"}', encoding="utf-8")
    with pytest.raises(InputError, match=r"dup.json: key 'a' is given twice"):
        load_json_set(path)


def test_txt_lines_ignore_a_byte_order_mark_and_keep_line_numbers(tmp_path):
    path = tmp_path / "lead.txt"
    path.write_text("\ufeff\n\n# a comment\nbom cat\n\nfox\n", encoding="utf-8")
    prompts = load_txt_lines(path)
    assert [(p.id, p.text) for p in prompts] == [("lead_004", "bom cat"), ("lead_006", "fox")]
    with_bom = tmp_path / "bom.json"
    with_bom.write_text('\ufeff{"x": "a cat"}', encoding="utf-8")
    assert [p.text for p in load_json_set(with_bom)] == ["a cat"]


def test_a_reference_images_folder_without_images_is_refused(tmp_path):
    from t2ibench.prompts import load_reference_images

    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=r"'prompts.reference_images': .* holds no images"):
        load_reference_images(tmp_path)
