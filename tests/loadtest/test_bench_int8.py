"""The int8 section's pure parts (issue 18): the served int8 artifact folder it assembles, and
its Markdown from a synthetic result. The measurement itself (quantisation, two services, W2
and W3 pairs) is ``python -m loadtest.bench --only int8``'s."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from export.artifact import INT8_FILE, load_artifact
from export.quantize import Int8Recipe
from loadtest.bench import int8
from service.backends import choose
from service.settings import ServiceSettings

ACCURACY = {
    "min_cosine_vs_fp32": 0.9812,
    "mean_cosine_vs_fp32": 0.99531,
    "top10_agreement": 0.951,
    "texts": 714,
}


def found() -> dict:
    """Every key ``section`` reads, as ``measure`` writes them."""
    ratio = {"ratio": {"w2": 1.41, "w3": 1.52}}
    pairs = [{"int8": 900.0, "bf16": 600.0}, {"int8": 880.0, "bf16": 640.0}]
    loop = {"clients": 4, "seconds_per_run": 8.0, "errors": 0}
    return {
        "threads": 2,
        "rounds": 5,
        "seconds": 301.4,
        "load_avg": ((2.5, 2.0, 1.5), (3.25, 2.0, 1.5)),
        "bf16": {**ACCURACY, "min_cosine_vs_fp32": 0.99994, "top10_agreement": 0.998},
        "recipes": {
            "nncf, attention kept in float": {**ACCURACY, **ratio, "quantize_s": 0.0},
            "nncf, attention kept in float (onnxruntime)": ACCURACY,  # accuracy only
        },
        "served": {
            "recipe": "nncf, attention kept in float",
            "backends": {
                "int8": {"name": "openvino", "precision": "int8"},
                "bf16": {"name": "openvino", "precision": "bf16"},
            },
            "accuracy": {"int8": ACCURACY, "bf16": {**ACCURACY, "min_cosine_vs_fp32": 0.9999}},
            "loops": {
                "w2": {
                    "label": "W2 32 sentences/request",
                    **loop,
                    "pairs": pairs,
                    "ratio_median": 1.44,
                    "ratio_range": (1.38, 1.5),
                },  # fmt: skip
                "w3": {
                    "label": "W3 8 passages/request",
                    **loop,
                    "pairs": pairs,
                    "ratio_median": 1.61,
                    "ratio_range": (1.55, 1.7),
                },  # fmt: skip
            },
        },
    }


def test_section_renders_offline_and_served_side_by_side() -> None:
    text = "\n".join(int8.section(found(), cores=2))
    assert "| nncf, attention kept in float | 0.9812 | 0.99531 | 0.951 | 1.41× | 1.52× |" in text
    assert (
        "| nncf, attention kept in float (onnxruntime) | 0.9812 | 0.99531 | 0.951 | — | — |" in text
    )
    assert (
        "`--precision int8` (/info: openvino int8) and the defaults (/info: openvino bf16)" in text
    )
    assert "| 1 | 900.0 | 600.0 | 1.50× | 900.0 | 600.0 | 1.50× |" in text
    assert "| 2 | 880.0 | 640.0 | 1.38× |" in text
    assert "| served int8 | **1.44×** (1.38-1.50×) | **1.61×** (1.55-1.70×) | 0.9812 |" in text
    assert "| offline int8 | 1.41× | 1.52× | 0.9812 | 0.99531 | 0.951 |" in text
    assert "Errors: 0." in text
    assert "took 301 s; load average (1 min) 2.5 at its start, 3.2 at its end" in text
    assert json.loads(json.dumps(found()))  # the section reads only what JSON keeps


def test_served_artifact_is_what_the_export_writes_with_int8(
    minilm_artifact: Path, tmp_path: Path
) -> None:
    """The assembled folder loads as an artifact with an int8 variant and its accuracy, and the
    service's backend choice takes it for ``--precision int8`` (no quantisation here: any file
    stands in for the graph, since loading checks hashes, not contents)."""
    base = load_artifact(minilm_artifact)
    graph = tmp_path / "graph.int8.onnx"
    shutil.copyfile(base.model_path, graph)
    recipe = Int8Recipe()
    folder = int8.served_artifact(base, graph, recipe, ACCURACY, tmp_path / "served")
    served = load_artifact(folder)
    assert served.int8_path == folder / INT8_FILE
    assert served.config.int8_top10_agreement == ACCURACY["top10_agreement"]
    assert served.manifest["extras"]["int8"]["recipe"] == recipe.to_dict()
    assert load_artifact(minilm_artifact).int8_path is None  # the base is left as it was
    settings = ServiceSettings.model_validate({"artifact": folder, "precision": "int8"})
    choice = choose(settings, served)
    assert choice.precision == "int8"
    assert "min cosine 0.9812" in choice.reason
    # Built again over itself (a rerun's work folder): the same folder, no stale link.
    assert load_artifact(int8.served_artifact(base, graph, recipe, ACCURACY, folder)).int8_path
