"""Every backend × precision that ``auto`` may pick keeps the accuracy bar on this hardware.

The torch backend (the reference, never picked by ``auto``) gets a smaller check of its own.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from common.arrays import encode_batches, normalize_rows, pad
from export.artifact import Artifact, load_artifact
from service.backends import (
    ACCURACY_FLOOR,
    Choice,
    _auto_cpu_precision,
    _check_runnable,
    choose,
    create_backend,
    create_backends,
    resolve_streams,
)
from service.backends.base import Backend
from service.settings import ServiceSettings

from ..helpers import cosine

CANDIDATES = [
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
]


def _skip_reason(backend: str, precision: str) -> str | None:
    if backend == "openvino":
        if importlib.util.find_spec("openvino") is None:
            return "OpenVINO is not installed on this platform"
        from service.backends.openvino import cpu_supports_bf16

        if precision == "bf16" and not cpu_supports_bf16():
            return "this CPU has no native bf16 (AVX512-BF16 / AMX)"
    return None


@pytest.fixture(scope="module", params=CANDIDATES, ids=["-".join(c) for c in CANDIDATES])
def backend(request, minilm_artifact: Path) -> Backend:
    name, precision = request.param
    if reason := _skip_reason(name, precision):
        pytest.skip(reason)
    settings = ServiceSettings(
        artifact=minilm_artifact, backend=name, precision=precision, num_cpus=2
    )
    built, choice = create_backend(settings, load_artifact(minilm_artifact))
    assert (built.name, built.precision) == (name, precision)
    return built


def _encode(backend: Backend, sequences: list[list[int]]) -> np.ndarray:
    return normalize_rows(encode_batches(sequences, backend.run, pad_id=0))


def _tolerance(backend: Backend) -> float:
    return 1e-5 if backend.precision == "fp32" else 2e-3


def test_min_cosine_to_fp32_pytorch_on_real_text(
    backend: Backend, minilm, corpus, reference_vectors: np.ndarray
) -> None:
    assert len(corpus) >= 500
    served = _encode(backend, minilm.tokenizer.tokenize(corpus))
    assert cosine(served, reference_vectors).min() >= 0.9999


def test_batch_composition_invariance(backend: Backend, minilm, corpus) -> None:
    text = "Is the vector of a sentence the same whoever it is batched with?"
    company = random.Random(0).sample(corpus, 31)
    ids = minilm.tokenizer.tokenize([text, *company])
    alone = backend.run(*pad([np.asarray(ids[0])], 0))[0]
    together = backend.run(*pad([np.asarray(s) for s in ids], 0))[0]
    assert np.abs(alone - together).max() <= _tolerance(backend) * max(1.0, np.abs(alone).max())


def test_auto_picks_one_of_the_checked_paths(minilm_artifact: Path) -> None:
    choice = choose(ServiceSettings(artifact=minilm_artifact), load_artifact(minilm_artifact))
    assert isinstance(choice, Choice) and choice.reason.startswith("auto:")
    assert (choice.backend, choice.precision) in CANDIDATES
    assert _skip_reason(choice.backend, choice.precision) is None


@pytest.mark.parametrize(
    ("measured", "native", "expected"),
    [
        (None, True, "bf16"),  # exported before it was measured, or where it could not be
        (ACCURACY_FLOOR, True, "bf16"),
        (0.99985, True, "fp32"),  # all-mpnet-base-v2's measured bf16
        (0.99999, False, "fp32"),
    ],
)
def test_auto_runs_bf16_only_where_the_export_did_not_measure_it_under_the_floor(
    minilm_artifact: Path, measured: float | None, native: bool, expected: str
) -> None:
    artifact = load_artifact(minilm_artifact)
    artifact = replace(artifact, config=replace(artifact.config, bf16_min_cosine=measured))
    precision, why = _auto_cpu_precision(artifact, native_bf16=native)
    assert precision == expected, why
    if measured is not None and native:
        assert f"{measured:.6f}" in why


@pytest.mark.parametrize(("task", "measured"), [("rerank", 0.0123), ("classify", None)])
def test_auto_serves_classifiers_in_fp32_naming_the_measured_bf16(
    minilm_artifact: Path, task: str, measured: float | None
) -> None:
    artifact = load_artifact(minilm_artifact)
    config = replace(artifact.config, task=task, bf16_max_abs_score=measured)
    precision, why = _auto_cpu_precision(replace(artifact, config=config), native_bf16=True)
    assert precision == "fp32" and task in why and "--precision bf16" in why
    assert ("0.012" if measured else "not measured") in why


def test_classifier_logits_match_the_graph_on_every_backend(
    reranker_artifact: Path, classifier_artifact: Path
) -> None:
    """The torch reference and the backend auto picks (OpenVINO fp32 where installed) give the
    ONNX graph's logits: ≤ 1e-4 on real pairs."""
    from common.texts import pairs, sentences

    from .conftest import artifact_ids, graph_logits

    cases = [(reranker_artifact, pairs(4, 4)), (classifier_artifact, sentences()[:16])]
    for path, inputs in cases:
        artifact = load_artifact(path)
        expected = graph_logits(path, inputs)  # (n, L)
        ids = artifact_ids(path, inputs)
        for name in ("torch", "auto"):
            settings = ServiceSettings(artifact=path, backend=name, num_cpus=2)
            backend, choice = create_backend(settings, artifact)
            run = partial(backend.run_output, "logits")
            got = encode_batches(ids, run, artifact.config.pad_token_id)
            assert choice.precision == "fp32"
            assert np.abs(got - expected).max() <= 1e-4, (path.name, choice)


def test_unsupported_precision_is_refused(minilm_artifact: Path) -> None:
    settings = ServiceSettings(artifact=minilm_artifact, backend="torch", precision="bf16")
    with pytest.raises(ValueError, match="torch supports"):
        choose(settings, load_artifact(minilm_artifact))


def _with_int8(artifact: Artifact, measured: float | None = 0.996) -> Artifact:
    """``artifact`` as if exported with ``--quantize int8`` (its fp32 graph stands in for the
    int8 file: only the choice is under test here; tests/export/test_quantize.py serves one)."""
    config = replace(artifact.config, int8_min_cosine=measured, int8_top10_agreement=measured)
    return replace(artifact, int8_path=artifact.model_path, config=config)


def test_auto_never_picks_int8_and_int8_asked_for_is_openvino_quoting_its_accuracy(
    minilm_artifact: Path,
) -> None:
    artifact = _with_int8(load_artifact(minilm_artifact))
    assert choose(ServiceSettings(artifact=minilm_artifact), artifact).precision != "int8"
    int8 = ServiceSettings(artifact=minilm_artifact, precision="int8")
    asked = choose(int8, artifact)
    expected = "openvino" if importlib.util.find_spec("openvino") else "onnxruntime"
    assert (asked.backend, asked.precision) == (expected, "int8")
    assert (
        "min cosine 0.9960" in asked.reason and "top-10 neighbour agreement 0.996" in asked.reason
    )
    older = choose(
        ServiceSettings(artifact=minilm_artifact, precision="int8"), _with_int8(artifact, None)
    )
    assert "not measured at export" in older.reason


@pytest.mark.parametrize("backend", ["auto", "openvino", "onnxruntime"])
def test_int8_without_an_int8_variant_is_refused(minilm_artifact: Path, backend: str) -> None:
    settings = ServiceSettings(artifact=minilm_artifact, backend=backend, precision="int8")
    with pytest.raises(ValueError, match="needs an int8 variant.*--quantize int8"):
        choose(settings, load_artifact(minilm_artifact))


def test_bf16_on_a_cpu_without_it_and_fp16_on_openvino_are_refused(minilm_artifact: Path) -> None:
    artifact = load_artifact(minilm_artifact)
    with pytest.raises(ValueError, match="bf16 needs a CPU with AVX512-BF16 or AMX"):
        _check_runnable(Choice("openvino", "bf16", "test"), artifact, native_bf16=False)
    with pytest.raises(ValueError, match="openvino supports"):
        _check_runnable(Choice("openvino", "fp16", "test"), artifact, native_bf16=True)
    # auto asked for fp16 on the CPU takes the backend that runs it.
    settings = ServiceSettings(artifact=minilm_artifact, precision="fp16")
    assert choose(settings, artifact).backend == "onnxruntime"


def test_torch_reference_backend_matches_the_model(minilm_artifact: Path, minilm, corpus) -> None:
    settings = ServiceSettings(artifact=minilm_artifact, backend="torch", num_cpus=2)
    torch_backend, _ = create_backend(settings, load_artifact(minilm_artifact))
    texts = corpus[:40]
    np.testing.assert_allclose(
        _encode(torch_backend, minilm.tokenizer.tokenize(texts)), minilm.encode(texts), atol=1e-5
    )


def test_streams_default_to_two_only_for_openvino_with_two_threads(minilm_artifact: Path) -> None:
    openvino = Choice("openvino", "fp32", "test")
    onnxruntime = Choice("onnxruntime", "fp32", "test")

    def with_cpus(n: int, **extra: int) -> ServiceSettings:
        return ServiceSettings(artifact=minilm_artifact, num_cpus=n, **extra)

    assert resolve_streams(with_cpus(2), openvino) == 2
    assert resolve_streams(with_cpus(1), openvino) == 1
    assert resolve_streams(with_cpus(4), onnxruntime) == 1
    assert resolve_streams(with_cpus(4, streams=3), openvino) == 3
    with pytest.raises(ValueError, match="needs the openvino backend"):
        resolve_streams(with_cpus(2, streams=2), onnxruntime)
    with pytest.raises(ValueError, match="at least as many threads"):
        resolve_streams(with_cpus(2, streams=3), openvino)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_streams_running_at_once_keep_the_bar(
    precision: str, minilm_artifact: Path, minilm, corpus, reference_vectors: np.ndarray
) -> None:
    """What ``auto`` serves on two cores: two streams of one thread, called concurrently, and
    the whole-machine stream a lone input runs on; all agree with each other and the bar. On
    every third text (sentences and passages): each backend's bar over the whole corpus is
    test_min_cosine_to_fp32_pytorch_on_real_text's."""
    if reason := _skip_reason("openvino", precision):
        pytest.skip(reason)
    settings = ServiceSettings(
        artifact=minilm_artifact, backend="openvino", precision=precision, num_cpus=2
    )
    backends = create_backends(settings, load_artifact(minilm_artifact))
    streams, whole = backends.streams, backends.whole
    assert len(streams) == 2 and whole is not None
    ids = minilm.tokenizer.tokenize(corpus[::3])
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda b: _encode(b, ids), streams))
    alone = _encode(whole, ids)  # a lone input gets every thread
    for served in [*both, alone]:
        assert cosine(served, reference_vectors[::3]).min() >= 0.9999
        assert np.abs(served - both[0]).max() <= _tolerance(streams[0])


# Run in a fresh process: oneDNN reads its cache size from the environment once per process.
SHAPES_SCRIPT = """
import random, sys
from pathlib import Path
import numpy as np
from service.backends.openvino import compile_streams

def rss_mib():
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in lines if line.startswith("VmRSS")).split()[1]) / 1024

cached = int(sys.argv[2])
[backend] = compile_streams(Path(sys.argv[1]) / "model.onnx", 1, "fp32", cache_shapes=cached)
shapes = [(b, t) for t in range(2, 84) for b in (1, 2, 3, 4)]
random.Random(0).shuffle(shapes)
def run(part):
    for b, t in part:
        backend.run(np.full((b, t), 1000, dtype=np.int64), np.ones((b, t), dtype=np.int64))
run([(4, 83), *shapes[: 2 * cached]])  # the largest buffers, then a full cache
before = rss_mib()
run(shapes[2 * cached :])  # about 300 shapes it has not seen
print(rss_mib() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_openvino_memory_stays_bounded_as_input_shapes_keep_changing(minilm_artifact: Path) -> None:
    """Mixed traffic keeps making new (batch, length) shapes; neither OpenVINO's kernel cache nor
    oneDNN's may keep them all (by default 5000 and 1024: a soak grew 2 MiB/s). A cache of 16
    shapes here, in a replica's environment, so that 300 shapes past a full cache take seconds:
    kept, they add about 75 MiB; bounded, about 12 MiB (oneDNN's 256 kernels filling up)."""
    if reason := _skip_reason("openvino", "fp32"):
        pytest.skip(reason)
    from service.app import replica_env

    env = {**os.environ, **replica_env(ServiceSettings(artifact=minilm_artifact, num_cpus=1))}
    command = [sys.executable, "-c", SHAPES_SCRIPT, str(minilm_artifact), "16"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.split()[-1]) < 30
