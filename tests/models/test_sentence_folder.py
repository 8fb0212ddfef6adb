"""Reading a folder's sentence-transformers files: both pooling formats, prompts, max length,
and a clear refusal of what our encoder would not compute as sentence-transformers does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models import CheckpointError
from models.sentence_folder import SentenceFolder, read_sentence_folder, with_prompt

ST = "sentence_transformers.models."
MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": ST + "Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": ST + "Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": ST + "Normalize"},
]


def _folder(tmp_path: Path, **files: Any) -> Path:
    """A folder with the given JSON files (``a/b.json`` as ``a__b``)."""
    for name, content in files.items():
        path = tmp_path / (name.replace("__", "/") + ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
    return tmp_path


def _pooling(tmp_path: Path, cfg: dict[str, Any]) -> Path:
    return _folder(tmp_path, modules=MODULES, **{"1_Pooling__config": cfg})


def test_a_folder_without_sentence_files_has_the_defaults(tmp_path: Path) -> None:
    assert read_sentence_folder(tmp_path) == SentenceFolder()


@pytest.mark.parametrize(
    ("mode", "ours"), [("mean", "mean"), ("cls", "cls"), ("max", "max"), ("lasttoken", "last")]
)
def test_the_v6_pooling_format(tmp_path: Path, mode: str, ours: str) -> None:
    cfg = {"embedding_dimension": 64, "pooling_mode": mode, "include_prompt": True}
    settings = read_sentence_folder(_pooling(tmp_path, cfg))
    assert (settings.pooling, settings.normalize) == (ours, True)


@pytest.mark.parametrize(
    ("key", "ours"),
    [
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_lasttoken", "last"),
    ],
)
def test_the_legacy_pooling_format(tmp_path: Path, key: str, ours: str) -> None:
    cfg = {"word_embedding_dimension": 64, "pooling_mode_mean_tokens": False, key: True}
    assert read_sentence_folder(_pooling(tmp_path, cfg)).pooling == ours


def test_legacy_keys_all_off_mean_mean_as_sentence_transformers_reads_them(tmp_path: Path) -> None:
    cfg = {"word_embedding_dimension": 64, "pooling_mode_cls_token": False}
    assert read_sentence_folder(_pooling(tmp_path, cfg)).pooling == "mean"


def test_pooling_mode_wins_over_legacy_keys(tmp_path: Path) -> None:
    cfg = {"pooling_mode": ["cls"], "pooling_mode_mean_tokens": True}
    assert read_sentence_folder(_pooling(tmp_path, cfg)).pooling == "cls"


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"pooling_mode": "weightedmean"}, "pooling_mode 'weightedmean' is not supported"),
        ({"pooling_mode_mean_sqrt_len_tokens": True}, "'mean_sqrt_len_tokens' is not supported"),
        ({"pooling_mode": ["mean", "max"]}, r"\['mean', 'max'\] is not supported"),
        (
            {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True},
            r"\['cls', 'mean'\] is not supported",
        ),
        ({"pooling_mode": "mean", "include_prompt": False}, "include_prompt false"),
    ],
)
def test_pooling_we_do_not_compute_is_refused_by_file_and_value(
    tmp_path: Path, cfg: dict[str, Any], message: str
) -> None:
    with pytest.raises(CheckpointError, match=message) as error:
        read_sentence_folder(_pooling(tmp_path, cfg))
    assert "1_Pooling/config.json" in str(error.value)
    if "include_prompt" not in message:
        assert "use one of mean, cls, max, lasttoken" in str(error.value)


def test_a_module_we_do_not_run_is_refused(tmp_path: Path) -> None:
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": ST + "Dense"}
    folder = _folder(tmp_path, modules=[*MODULES[:2], dense])
    with pytest.raises(CheckpointError, match=r"modules.json: module '.*Dense' is not supported"):
        read_sentence_folder(folder)


def test_prompts_and_their_default(tmp_path: Path) -> None:
    prompts = {"query": "query: ", "passage": "passage: ", "none": None}
    cfg = {"prompts": prompts, "default_prompt_name": "query"}
    settings = read_sentence_folder(_folder(tmp_path, config_sentence_transformers=cfg))
    assert settings.prompts == {"query": "query: ", "passage": "passage: ", "none": ""}
    assert settings.default_prompt_name == "query"


def test_a_default_prompt_that_is_not_a_prompt_is_refused(tmp_path: Path) -> None:
    cfg = {"prompts": {"query": "query: "}, "default_prompt_name": "doc"}
    with pytest.raises(CheckpointError, match="default_prompt_name 'doc' is not one of"):
        read_sentence_folder(_folder(tmp_path, config_sentence_transformers=cfg))


def test_max_length_from_sentence_config_else_tokenizer_config(tmp_path: Path) -> None:
    both = _folder(
        tmp_path / "both",
        sentence_bert_config={"max_seq_length": 128},
        tokenizer_config={"model_max_length": 512},
    )
    assert read_sentence_folder(both).max_seq_length == 128
    tokenizer_only = _folder(tmp_path / "tok", tokenizer_config={"model_max_length": 512})
    assert read_sentence_folder(tokenizer_only).max_seq_length == 512
    unset = _folder(tmp_path / "unset", tokenizer_config={"model_max_length": int(1e30)})
    assert read_sentence_folder(unset).max_seq_length is None


def test_a_corrupt_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text("[{")
    with pytest.raises(CheckpointError, match="cannot read .*modules.json"):
        read_sentence_folder(tmp_path)


def test_with_prompt() -> None:
    prompts = {"query": "query: ", "passage": "passage: "}
    texts = ["a", "b"]
    assert with_prompt(texts, prompts, None) == texts
    assert with_prompt(texts, prompts, "query") == ["query: a", "query: b"]
    assert with_prompt(texts, prompts, "query", "passage") == ["passage: a", "passage: b"]
    with pytest.raises(ValueError, match="unknown prompt name 'doc'; .*: passage, query"):
        with_prompt(texts, prompts, None, "doc")
    with pytest.raises(ValueError, match="this model's prompts: none"):
        with_prompt(texts, {}, None, "query")
