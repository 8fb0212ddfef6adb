"""The padding, batching and cosine every package shares."""

from __future__ import annotations

import numpy as np
import pytest

from common.arrays import cosine_rows, encode_batches, longest_first, normalize_rows, pad
from common.texts import corpus, passages, sentences


def test_pad_right_pads_to_the_longest_with_a_mask() -> None:
    ids, mask = pad([[5, 6, 7], np.array([8]), [9, 10]], pad_id=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0], [9, 10, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    assert ids.dtype == mask.dtype == np.int64


def test_longest_first_batches_every_input_once() -> None:
    lengths = [3, 9, 1, 9, 4]
    batches = longest_first(lengths, batch_size=2)
    assert [list(b) for b in batches] == [[1, 3], [4, 0], [2]]  # ties keep their order


def test_encode_batches_returns_rows_in_input_order() -> None:
    """Each row is a function of its own input only, whatever batch it ran in."""
    sequences = [[1] * n for n in (4, 1, 7, 2, 7, 3)]
    calls: list[tuple[int, int]] = []

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        calls.append(ids.shape)
        return np.stack([mask.sum(1), ids.sum(1)], axis=1).astype(np.float32)  # (B, 2)

    out = encode_batches(sequences, run, pad_id=0, batch_size=4)
    np.testing.assert_array_equal(out[:, 0], [4, 1, 7, 2, 7, 3])
    assert calls == [(4, 7), (2, 2)]  # longest first: little padding
    given = encode_batches(sequences, run, pad_id=0, batches=[[5], [0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(given, out)


def test_normalize_rows_leaves_zero_rows_zero() -> None:
    out = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_cosine_rows_handles_zero_vectors() -> None:
    a = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 0.0], [0.0, 0.0], [2.0, 2.0]])
    np.testing.assert_allclose(cosine_rows(a, b), [1.0, 0.0, 1.0])


@pytest.mark.parametrize("texts", [sentences, passages])
def test_texts_are_non_empty_lines(texts) -> None:
    lines = texts()
    assert len(lines) > 40 and all(line.strip() == line and line for line in lines)
    assert corpus()[: len(sentences())] == sentences()
