"""Every mistake a user can make gets one line on stderr, exit code 2, and no traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from export.cli import main
from export.validate import cuda_available
from models import get_model_path
from models.checkpoint import CONFIG_FILE, WEIGHTS_FILE

MINILM_TOKENIZER = get_model_path() / "tokenizer.json"


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    return err


def test_unknown_model_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = one_error_line(capsys, ["--model", "no-such-model", "--output", str(tmp_path / "o")])
    assert "unknown model 'no-such-model'" in err


def test_missing_weights(
    capsys: pytest.CaptureFixture[str], tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    source = tiny_model()
    (source / WEIGHTS_FILE).unlink()
    err = one_error_line(capsys, ["--model", str(source), "--output", str(tmp_path / "o")])
    assert WEIGHTS_FILE in err


def test_corrupt_weights(
    capsys: pytest.CaptureFixture[str], tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    source = tiny_model()
    (source / WEIGHTS_FILE).write_bytes(b"\x00garbage" * 10)
    err = one_error_line(capsys, ["--model", str(source), "--output", str(tmp_path / "o")])
    assert "cannot read" in err


def test_d_model_not_divisible_by_heads(
    capsys: pytest.CaptureFixture[str], tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    source = tiny_model()
    config = json.loads((source / CONFIG_FILE).read_text())
    (source / CONFIG_FILE).write_text(json.dumps({**config, "d_model": 30}))
    err = one_error_line(capsys, ["--model", str(source), "--output", str(tmp_path / "o")])
    assert "divisible" in err


def test_output_folder_that_is_not_an_artifact(
    capsys: pytest.CaptureFixture[str], tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    output = tmp_path / "o"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    err = one_error_line(capsys, ["--model", str(tiny_model()), "--output", str(output)])
    assert "--force" in err
    assert (output / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("opset", ["16", "26", "99"])
def test_unsupported_opset(capsys: pytest.CaptureFixture[str], tmp_path: Path, opset: str) -> None:
    argv = ["--model", "all-MiniLM-L6-v2", "--output", str(tmp_path / "o"), "--opset", opset]
    assert f"unsupported opset {opset}" in one_error_line(capsys, argv)


def test_max_seq_length_beyond_positions(
    capsys: pytest.CaptureFixture[str], tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    argv = ["--model", str(tiny_model()), "--output", str(tmp_path / "o")]
    assert "max_position" in one_error_line(capsys, [*argv, "--max-seq-length", "65"])


def test_tokenizer_larger_than_vocabulary(
    capsys: pytest.CaptureFixture[str], tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    argv = ["--model", str(tiny_model()), "--output", str(tmp_path / "o")]
    err = one_error_line(capsys, [*argv, "--tokenizer", str(MINILM_TOKENIZER)])
    assert "30522 tokens but the model only 100" in err


def test_missing_tokenizer_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["--model", "all-MiniLM-L6-v2", "--output", str(tmp_path / "o")]
    assert "does not exist" in one_error_line(capsys, [*argv, "--tokenizer", "/no/such.json"])


def test_output_inside_the_model_folder_is_refused(
    capsys: pytest.CaptureFixture[str], tiny_model: Callable[..., Path]
) -> None:
    source = tiny_model()
    err = one_error_line(capsys, ["--model", str(source), "--output", str(source), "--force"])
    assert "model's own files" in err
    assert (source / WEIGHTS_FILE).is_file()


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA")
def test_cuda_requested_but_not_available(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["--model", "all-MiniLM-L6-v2", "--output", str(tmp_path / "o"), "--device", "cuda"]
    assert "cuda requested but not available" in one_error_line(capsys, argv)
    assert "cuda requested but not available" in one_error_line(capsys, [*argv, "--fp16"])


def test_fp16_needs_cuda(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["--model", "all-MiniLM-L6-v2", "--output", str(tmp_path / "o"), "--fp16"]
    assert "--device cuda" in one_error_line(capsys, argv)


def test_parity_failure_exits_1_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    output = tmp_path / "o"
    argv = ["--model", str(tiny_model()), "--output", str(output), "--atol", "1e-12"]
    err = one_error_line(capsys, argv, code=1)
    assert "parity failed for model.onnx" in err and "exceeds --atol 1e-12" in err
    assert "left unchanged" in err
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.")] == []


def test_errors_from_a_real_process_have_no_traceback(run_cli: Callable, tmp_path: Path) -> None:
    done = run_cli("--model", "no-such-model", "--output", str(tmp_path / "o"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: unknown model")
