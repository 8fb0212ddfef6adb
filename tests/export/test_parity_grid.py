"""The parity grid: whole for MiniLM-sized models, bounded for long-context ones."""

from __future__ import annotations

from export.parity import GRID_BATCHES, MAX_GRID_CELLS, MAX_GRID_SEQ, grid_shapes


def test_a_256_token_model_gets_every_batch_at_every_length() -> None:
    shapes = grid_shapes(256)
    assert shapes == [(b, s) for b in GRID_BATCHES for s in (1, 7, 128, 256)]


def test_a_long_context_model_is_checked_to_max_grid_seq_within_the_cell_budget() -> None:
    for max_len in (8192, 32768):
        shapes = grid_shapes(max_len)
        assert max(s for _, s in shapes) == MAX_GRID_SEQ
        assert all(b * s * s <= MAX_GRID_CELLS for b, s in shapes)
        assert (1, MAX_GRID_SEQ) in shapes and (64, 128) in shapes  # still both axes
        assert len(shapes) == len(set(shapes))


def test_a_short_model_is_checked_at_its_own_length() -> None:
    assert {s for _, s in grid_shapes(5)} == {1, 5}
