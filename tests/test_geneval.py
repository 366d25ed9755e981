"""GenEval: the prompt suite our code makes is GenEval's own, and the decision rules pass
and fail each task as GenEval's evaluate() does, on hand-made detections."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from t2ibench.errors import InputError
from t2ibench.geneval.rules import Detection, evaluate, keep, relative_position
from t2ibench.geneval.suite import generate_suite, metadata_lines, read_metadata

# sha256 of GenEval's prompts/evaluation_metadata.jsonl (github.com/djghosh13/geneval).
GENEVAL_METADATA_SHA256 = "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13"


def test_the_suite_is_genevals_own_byte_for_byte():
    suite = generate_suite()
    text = metadata_lines(suite)
    assert hashlib.sha256(text.encode()).hexdigest() == GENEVAL_METADATA_SHA256
    counts = Counter(s["tag"] for s in suite)
    assert counts == {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94,
                      "position": 100, "color_attr": 100}  # fmt: skip
    assert suite[0]["prompt"] == "a photo of a bench"
    assert generate_suite(seed=1) != suite and len(generate_suite(per_task=5)) <= 105


def box(x1, y1, x2, y2, score=0.95) -> Detection:
    return Detection((x1, y1, x2, y2), score)


def no_colours(found, name):
    raise AssertionError("no colour asked for")


def judge(detections, metadata, colours=no_colours):
    return evaluate(keep(detections, metadata["tag"]), metadata, colours)


def meta(tag, *include, exclude=()):
    return {"tag": tag, "include": list(include), "exclude": list(exclude), "prompt": "p"}


def test_single_and_two_objects():
    one = meta("single_object", {"class": "dog", "count": 1})
    assert judge({"dog": [box(0, 0, 10, 10, 0.5)]}, one) == (True, "")
    assert judge({"dog": [box(0, 0, 10, 10, 0.25)]}, one) == (False, "expected dog>=1, found 0")
    two = meta("two_object", {"class": "dog", "count": 1}, {"class": "cat", "count": 1})
    found = {"dog": [box(0, 0, 10, 10)], "cat": [box(20, 0, 30, 10, 0.31)]}
    assert judge(found, two) == (True, "")
    assert judge({"dog": found["dog"]}, two) == (False, "expected cat>=1, found 0")


def test_counting_uses_its_own_threshold_and_the_exclude_clause():
    three = meta("counting", {"class": "dog", "count": 3}, exclude=[{"class": "dog", "count": 4}])
    dogs = [box(i * 20, 0, i * 20 + 10, 10, 0.95) for i in range(4)]
    assert judge({"dog": dogs[:3]}, three) == (True, "")
    assert judge({"dog": dogs[:2]}, three) == (False, "expected dog>=3, found 2")
    assert judge({"dog": dogs}, three) == (False, "expected dog<4, found 4")
    unsure = [*dogs[:3], box(90, 0, 99, 10, 0.6)]  # below 0.9: not counted
    assert judge({"dog": unsure}, three) == (True, "")


def test_colours_of_the_most_confident_objects():
    red_car = meta("colors", {"class": "car", "count": 1, "color": "red"})
    cars = {"car": [box(0, 0, 10, 10, 0.4), box(20, 0, 30, 10, 0.8)]}
    asked = []

    def colours(found, name):
        asked.append([d.score for d in found])
        return ["red"] * len(found)

    assert judge(cars, red_car, colours) == (True, "")
    assert asked == [[0.8]]  # only the `count` most confident are classified
    verdict = judge(cars, red_car, lambda found, name: ["blue"])
    assert verdict == (False, "expected red car>=1, found 0 red; and 1 blue")
    attr = meta(
        "color_attr",
        {"class": "car", "count": 1, "color": "red"},
        {"class": "bench", "count": 1, "color": "white"},
    )
    both = {**cars, "bench": [box(40, 0, 50, 10)]}
    by_class = {"car": "red", "bench": "black"}
    ok, reason = judge(both, attr, lambda found, name: [by_class[name]] * len(found))
    assert not ok and reason == "expected white bench>=1, found 0 white; and 1 black"


def test_positions_with_the_margin():
    # "a photo of a cat left of a dog": include [dog, cat left of include 0]
    left = meta("position", {"class": "dog", "count": 1},
                {"class": "cat", "count": 1, "position": ["left of", 0]})  # fmt: skip
    dog = box(60, 40, 100, 80)
    assert judge({"dog": [dog], "cat": [box(0, 40, 40, 80)]}, left) == (True, "")
    ok, reason = judge({"dog": [dog], "cat": [box(120, 40, 160, 80)]}, left)
    assert not ok and reason == "expected cat left of target, found right of target"
    # centres 10 px apart, boxes 40 px wide: within 0.1 x (40 + 40), no relation at all
    ok, reason = judge({"dog": [dog], "cat": [box(50, 40, 90, 80)]}, left)
    assert not ok and reason == "expected cat left of target, found  target"
    ok, reason = judge({"cat": [box(0, 40, 40, 80)]}, left)
    assert reason == "expected dog>=1, found 0; no target for cat to be left of"
    assert relative_position(box(0, 0, 10, 10), box(0, 100, 10, 110)) == {"above"}
    diagonal = relative_position(box(0, 0, 10, 10), box(100, 100, 110, 110))
    assert diagonal == {"above", "left of"}  # both parts of the offset pass 0.5


def test_at_most_sixteen_objects_per_class():
    many = [box(i, 0, i + 1, 1, 0.5 + i / 100) for i in range(20)]
    kept = keep({"dog": many}, "single_object")["dog"]
    assert len(kept) == 16 and kept[0].score == max(d.score for d in many)


def test_genevals_own_metadata_file_is_read(tmp_path):
    path = tmp_path / "evaluation_metadata.jsonl"
    path.write_text(metadata_lines(generate_suite()))
    prompts = read_metadata(path)
    assert len(prompts) == 553 and prompts[0] == (1, generate_suite()[0])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", r"line 2: not JSON"),
        (json.dumps({"tag": "counting", "include": [{"class": "unicorn", "count": 2}],
                     "prompt": "p"}), r"line 2: include\[0\]: unknown class 'unicorn'"),
        (json.dumps({"tag": "sizes", "include": [], "prompt": "p"}), r"line 2: unknown tag"),
        (json.dumps({"tag": "colors", "include": [{"class": "car", "count": 1,
                     "color": "teal"}], "prompt": "p"}), r"unknown color 'teal'"),
        (json.dumps({"tag": "position", "include": [{"class": "car", "count": 1,
                     "position": ["left of", 0]}], "prompt": "p"}), r"'position' must be"),
    ],
)  # fmt: skip
def test_bad_metadata_is_one_line_naming_the_file_and_line(tmp_path, line, expected):
    path = tmp_path / "meta.jsonl"
    path.write_text(json.dumps(generate_suite()[0]) + "\n" + line + "\n")
    with pytest.raises(InputError, match=expected) as err:
        read_metadata(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_the_shipped_suite_is_the_generated_one_and_loads_as_prompts(repo):
    from t2ibench.prompts import load_source

    shipped = repo / "prompts" / "geneval.jsonl"
    assert shipped.read_text() == metadata_lines(generate_suite())  # tools/geneval_prompts.py
    prompts = load_source(shipped)
    assert len(prompts) == 553 and prompts[0].id == "geneval_001"
    assert prompts[0].text == "a photo of a bench" and prompts[0].category == "single_object"
    counting = next(p for p in prompts if p.category == "counting")
    assert json.loads(counting.geneval)["exclude"][0]["count"] >= 3
    assert load_source(repo / "prompts" / "animals.json")[0].geneval == ""


# --- the detector and colour classifier, on tiny random models -----------------------------


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    from t2ibench.geneval.tiny import write_tiny_detector

    folder = tmp_path_factory.mktemp("m2f") / "tiny-mask2former"
    write_tiny_detector(folder, seed=0)
    return folder


def noise(h=72, w=100, seed=0):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_the_tiny_detector_runs_the_real_path_deterministically(tiny_detector):
    import numpy as np

    from t2ibench.geneval.detect import Detector, mask_box
    from t2ibench.geneval.suite import CLASSES

    detector = Detector(str(tiny_detector))
    found = detector.detect(noise())
    again = Detector(str(tiny_detector)).detect(noise())
    assert set(found) <= set(CLASSES)
    assert sum(map(len, found.values())) == min(100, 12 * 80)  # the 100 best pairs
    for name, detections in found.items():
        for d, e in zip(detections, again[name], strict=True):
            assert d.box == e.box and d.score == e.score and np.array_equal(d.mask, e.mask)
            assert d.mask.shape == (72, 100) and 0 <= d.score <= 1
            assert d.box == mask_box(d.mask)
    assert mask_box(np.zeros((4, 4), bool)) == (0.0, 0.0, 0.0, 0.0)
    grid = np.zeros((10, 10), bool)
    grid[2:5, 3:9] = True
    assert mask_box(grid) == (3.0, 2.0, 9.0, 5.0)  # mmdet's mask2bbox: max + 1


def test_colours_are_one_of_genevals_ten(repo):
    import numpy as np

    from t2ibench.geneval.detect import ColourClassifier
    from t2ibench.geneval.rules import Detection
    from t2ibench.geneval.suite import COLORS

    classify = ColourClassifier(str(repo / "config/models/open_clip-tiny.json"), "")
    mask = np.zeros((72, 100), bool)
    mask[10:40, 20:40] = True  # the left half of the box
    found = [Detection((20, 10, 60, 40), 0.9, mask), Detection((0, 0, 100, 72), 0.8)]
    colours = classify(noise(), found, "car")
    assert len(colours) == 2 and set(colours) <= set(COLORS)
    assert classify(noise(), found, "car") == colours  # deterministic
    crop = classify.crops(noise(), found[:1])[0]
    assert crop.size == (40, 30)
    assert crop.getpixel((30, 5)) == (153, 153, 153)  # outside the mask: GenEval's grey
    assert crop.getpixel((5, 5)) == noise().getpixel((25, 15))  # inside: the image


def test_a_detector_folder_of_the_wrong_kind_is_one_line(tmp_path, tiny_detector):
    import shutil

    from t2ibench.geneval.detect import Detector

    def error(folder) -> str:
        with pytest.raises(InputError) as err:
            Detector(str(folder))
        assert "\n" not in str(err.value) and "metrics.geneval.detector" in str(err.value)
        return str(err.value)

    assert "nothing is downloaded" in error(tmp_path / "nowhere")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "detr", "id2label": {}}))
    assert "not a Mask2Former" in error(other)
    few = tmp_path / "few"
    shutil.copytree(tiny_detector, few)
    config = json.loads((few / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b"}
    (few / "config.json").write_text(json.dumps(config))
    assert "expected the 80 COCO instance classes" in error(few)


def test_the_geneval_config_plans_the_whole_suite(repo, monkeypatch):
    from t2ibench.config import load_config, validate_config
    from t2ibench.plan import build_plan

    monkeypatch.chdir(repo)
    config = validate_config(load_config([str(repo / "config" / "geneval.yaml")]))
    plan = build_plan(config)
    assert len(plan.jobs) == 553 * 4
    assert {p.category for p in plan.experiments["baseline"].prompts} == set(
        ["single_object", "two_object", "counting", "colors", "position", "color_attr"]
    )
    from t2ibench.metrics.registry import enabled

    assert enabled(config["metrics"]) == ["geneval", "geneval_tasks"]
