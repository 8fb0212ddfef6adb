"""The input checks of a pipeline's first stage: each refusal with the status and code a client
can act on."""

from __future__ import annotations

import numpy as np
import pytest

from service import checks
from service.errors import ApiError

VOCAB = 100


def refusal(call, *args) -> tuple[int, str | None, str]:
    with pytest.raises(ApiError) as caught:
        call(*args)
    return caught.value.status, caught.value.code, caught.value.message


def test_count_must_be_between_one_and_max_inputs() -> None:
    checks.check_count(1, 4)
    checks.check_count(4, 4)
    assert refusal(checks.check_count, 0, 4)[:2] == (400, "empty_input")
    too_many = (413, "too_many_inputs", "5 inputs; at most 4 per request")
    assert refusal(checks.check_count, 5, 4) == too_many


def test_an_empty_text_is_named_by_its_place() -> None:
    checks.check_texts(["a", " "])
    empty = (400, "empty_input", "input[1] is an empty string")
    assert refusal(checks.check_texts, ["a", ""]) == empty


def test_dimensions_past_the_models_are_refused() -> None:
    checks.check_dimensions(None, 384)
    checks.check_dimensions(384, 384)
    assert refusal(checks.check_dimensions, 385, 384)[:2] == (400, "invalid_dimensions")


@pytest.mark.parametrize(
    "sequences, message",
    [
        ([[1, 2], []], "input[1] is an empty token list"),
        ([[1, VOCAB]], "input[0] has token ids outside the vocabulary 0..99"),
        ([[-1, 5]], "input[0] has token ids outside the vocabulary 0..99"),
        ([[2**70]], "input[0] has token ids outside the vocabulary 0..99"),  # past int64
    ],
)
def test_token_ids_must_be_known_and_non_empty(sequences: list[list[int]], message: str) -> None:
    status, code, said = refusal(checks.token_arrays, sequences, VOCAB)
    assert (status, said) == (400, message)
    assert code == ("empty_input" if "empty" in message else "invalid_token_id")


def test_known_ids_become_int64_arrays() -> None:
    [array] = checks.token_arrays([[0, 99]], VOCAB)
    assert array.dtype == np.int64 and array.tolist() == [0, 99]


def test_an_input_too_long_says_how_long_up_to_the_counted_limit() -> None:
    checks.reject_long([[1] * 8], 8)
    assert refusal(checks.reject_long, [[1] * 8, [1] * 9], 8)[:2] == (413, "input_too_long")
    assert "input[1] has 9 tokens" in refusal(checks.reject_long, [[1], [1] * 9], 8)[2]
    counted = 8 * checks.COUNT_LIMIT_FACTOR
    over = [[1] * checks.count_limit(8, truncate=False)]
    assert f"has more than {counted} tokens" in refusal(checks.reject_long, over, 8)[2]
    assert checks.count_limit(8, truncate=True) == 8


def test_cut_keeps_the_side_asked_for() -> None:
    ids = [np.arange(5), np.arange(2)]
    assert [a.tolist() for a in checks.cut(ids, 3, "right")] == [[0, 1, 2], [0, 1]]
    assert [a.tolist() for a in checks.cut(ids, 3, "left")] == [[2, 3, 4], [0, 1]]
