"""A metric is one registry entry: a toy metric registered by a plugin file written here
reaches every output (its table, results.csv, summary.csv, comparisons.csv, a plot,
metadata.json and the viewer's data) without any other module knowing its name."""

from __future__ import annotations

import csv
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2ibench.config import validate_config
from t2ibench.errors import InputError
from t2ibench.metrics import registry

from workflow_helpers import make_workdir, nothing_to_do, snakemake, tiny_sdxl_models, write_config

PLUGIN = textwrap.dedent(
    '''
    """A toy metric: how dark an image is (255 minus its mean grey level), times `scale`."""

    from t2ibench.metrics.registry import Column, Metric, register


    def table(plan, experiment, jobs, cache_path):
        import numpy as np

        from t2ibench.scoring import image_scores

        scale = plan.config["metrics"]["toy"]["scale"]

        def darkness(image, prompt):
            return scale * (255 - float(np.asarray(image.convert("L"), dtype=np.float64).mean()))

        return image_scores(
            plan, experiment, jobs, cache_path, "toy_darkness", f"toy_darkness/v1/x{scale}",
            darkness,
        )


    register(
        Metric(
            name="toy",
            granularity="image",
            columns=(Column("toy_darkness", higher_is_better=False, note="lower = brighter"),),
            summary="Toy darkness: 255 minus the mean grey level.",
            table=table,
            settings={"scale": {"type": "number", "default": 1.0}},
        )
    )
    '''
)
OTHERS_OFF = {section: {"enabled": False} for section in registry.sections()}


@pytest.fixture
def plugin(tmp_path):
    """The plugin file; the toy metric is unregistered afterwards (it would otherwise be
    on in every later config of this process)."""
    path = tmp_path / "toy_metric.py"
    path.write_text(PLUGIN)
    yield path
    registry.unregister("toy")


def test_a_plugin_section_joins_the_config_checks(plugin):
    config = validate_config({"metric_plugins": [str(plugin)], "metrics": {"toy": {}}})
    assert config["metrics"]["toy"] == {"enabled": True, "scale": 1.0}
    assert "toy" in registry.enabled(config["metrics"])
    with pytest.raises(InputError, match=r"^config key 'metrics.toy.scale': expected a number"):
        validate_config({"metric_plugins": [str(plugin)], "metrics": {"toy": {"scale": "x"}}})


def test_plugin_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match=r"'metric_plugins\[0\]': file .*nope.py does not exist"):
        validate_config({"metric_plugins": [str(tmp_path / "nope.py")]})
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    with pytest.raises(InputError) as err:
        validate_config({"metric_plugins": [str(broken)]})
    assert "metric_plugins[0]" in str(err.value) and "not_a_module_anywhere" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="unknown config key 'toy' under 'metrics'"):
        validate_config({"metrics": {"toy": {}}})  # no plugin: no such section


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_toy_metric_reaches_every_output(tmp_path):
    work = make_workdir(tmp_path)
    (work / "toy_metric.py").write_text(PLUGIN)
    (work / "prompts" / "toy.json").write_text(
        json.dumps({"t1": {"text": "a red cube"}, "t2": {"text": "a dark forest"}})
    )
    config = {
        "metric_plugins": ["toy_metric.py"],
        "models": tiny_sdxl_models(),
        "prompts": {"sources": ["prompts/toy.json"]},
        "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 2},
        "metrics": {**OTHERS_OFF, "toy": {"scale": 2.0}},
        "report": {"grid_cell_size": 64},
        "torch_threads": 1,
    }
    write_config(work, config)
    snakemake(work, "--configfile", "test-config.yaml")
    exp = work / "results" / "baseline"

    rows = read_csv(exp / "results.csv")
    assert len(rows) == 8 and "toy_darkness" in rows[0]
    for row in rows:  # each value is the image's, computed here independently
        grey = np.asarray(Image.open(work / row["image_path"]).convert("L"), dtype=np.float64)
        assert float(row["toy_darkness"]) == pytest.approx(2 * (255 - grey.mean()), rel=1e-9)
    assert len(read_csv(exp / "metrics" / "toy.csv")) == 8

    summary = read_csv(exp / "summary.csv")
    for row in summary:
        mine = [float(r["toy_darkness"]) for r in rows if r["model"] == row["model"]]
        assert float(row["toy_darkness_mean"]) == pytest.approx(np.mean(mine), rel=1e-9)
        assert float(row["toy_darkness_ci_low"]) <= float(row["toy_darkness_ci_high"])
    compared = [r for r in read_csv(exp / "comparisons.csv") if r["metric"] == "toy_darkness"]
    assert [r["comparison"] for r in compared] == ["model vs first model"]
    assert (exp / "plots" / "toy_darkness_bars.png").is_file()

    meta = json.loads((exp / "metadata.json").read_text())
    assert meta["metrics"]["toy"]["columns"]["toy_darkness"]["higher_is_better"] is False
    text = (work / "results" / "report" / "data.js").read_text(encoding="utf-8")
    data = json.loads(re.search(r"^window\.T2I\.data = (.*);$", text, re.MULTILINE).group(1))
    (viewed,) = [e for e in data["experiments"] if e["name"] == "baseline"]
    assert viewed["metrics"] == ["toy_darkness", "generation_seconds"]
    assert viewed["facts"]["toy_darkness"]["higher_is_better"] is False
    by_path = {r["image_path"]: float(r["toy_darkness"]) for r in rows}
    values = sorted(i["metrics"]["toy_darkness"] for i in viewed["images"])
    assert values == pytest.approx(sorted(by_path.values()))
    page = (exp / "index.html").read_text(encoding="utf-8")
    assert "Toy darkness: 255 minus the mean grey level." in page

    # A setting of the plugin's own section is a rerun trigger of its table only.
    assert nothing_to_do(snakemake(work, "--configfile", "test-config.yaml", "-n"))
