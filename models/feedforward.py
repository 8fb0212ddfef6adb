"""Position-wise feed-forward: plain (BERT: up → act → down) or gated (GLU family, as in Llama)."""

from __future__ import annotations

from torch import Tensor, nn

from .config import Activation, EncoderConfig

ACTIVATIONS: dict[Activation, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


class FeedForward(nn.Module):
    """down(act(up(x))): each token widened to d_ff, passed through the activation, narrowed."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff, bias=config.mlp_bias)
        self.act = ACTIVATIONS[config.activation]()
        self.down = nn.Linear(config.d_ff, config.d_model, bias=config.mlp_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.up(x)))  # (B, T, D) -> (B, T, F) -> (B, T, D)


class GatedFeedForward(FeedForward):
    """down(act(gate(x)) * up(x)): a second projection decides, per feature, how much passes.

    With SiLU this is SwiGLU (Shazeer, "GLU Variants Improve Transformer"; Llama, Qwen3), with
    GELU GeGLU (ModernBERT); the state-dict names are those of the plain block plus ``gate``.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        self.gate = nn.Linear(config.d_model, config.d_ff, bias=config.mlp_bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.gate(x)) * self.up(x)  # (B, T, D) -> (B, T, F)
        return self.down(h)  # (B, T, D)


def make_feed_forward(config: EncoderConfig) -> FeedForward:
    """The block ``config.feed_forward`` names."""
    return GatedFeedForward(config) if config.feed_forward == "gated" else FeedForward(config)
