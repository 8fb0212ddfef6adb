import pytest
import torch

from models import ClassificationHead, EncoderConfig
from models.embeddings import Embeddings, segment_types


def test_pair_token_types_start_after_the_first_separator() -> None:
    sep = 3
    ids = torch.tensor(
        [[2, 5, 3, 7, 8, 3, 0, 0], [2, 3, 3, 9, 3, 0, 0, 0], [2, 5, 6, 3, 0, 0, 0, 0]]
    )
    assert segment_types(ids, sep).tolist() == [
        [0, 0, 0, 1, 1, 1, 1, 1],  # [CLS] q [SEP] d d [SEP] pad pad
        [0, 0, 1, 1, 1, 1, 1, 1],  # an empty query
        [0, 0, 0, 0, 1, 1, 1, 1],  # one text: type 0 up to its [SEP]
    ]


def test_segment_types_reach_the_embeddings() -> None:
    """A BERT cross-encoder adds type row 1 to the document; an embedder row 0 everywhere."""
    config = EncoderConfig(vocab_size=50, d_model=32, n_heads=4, n_layers=1, d_ff=64)
    pair = config.replace(segment_separator=3)
    ids = torch.tensor([[2, 5, 3, 7, 3]])
    torch.manual_seed(0)
    single = Embeddings(config).eval()
    paired = Embeddings(pair).eval()
    paired.load_state_dict(single.state_dict())
    a, b = single(ids), paired(ids)  # (1, T, D)
    assert torch.equal(a[0, :3], b[0, :3]) and not torch.allclose(a[0, 3:], b[0, 3:])


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({}, {"dense.weight", "dense.bias", "out.weight", "out.bias"}),
        (
            {"head_norm": True, "head_dense_bias": False, "head_activation": "gelu"},
            {"dense.weight", "norm.weight", "norm.bias", "out.weight", "out.bias"},
        ),
        ({"head_dense": False, "head_bias": False}, {"out.weight"}),
    ],
)
def test_head_shapes_by_config(changes: dict, names: set[str]) -> None:
    config = EncoderConfig(d_model=32, n_heads=4, num_labels=3, **changes)
    head = ClassificationHead(config)
    assert set(head.state_dict()) == names
    assert head(torch.randn(5, 32)).shape == (5, 3)  # (B, D) -> (B, L)


def test_an_embedder_has_no_head() -> None:
    with pytest.raises(ValueError, match="num_labels >= 1"):
        ClassificationHead(EncoderConfig())
