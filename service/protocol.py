"""Request bodies of the HTTP API, as strict pydantic models (no silent coercion)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

TokenIds = list[StrictInt]


class OpenAIEmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: https://platform.openai.com/docs/api-reference/embeddings"""

    model_config = ConfigDict(extra="ignore")

    input: StrictStr | list[StrictStr] | TokenIds | list[TokenIds]
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, ge=1)
    user: StrictStr | None = None


def _direction(value: object) -> object:
    # TEI spells the enum "Right"/"Left"; accept any case.
    return value.lower() if isinstance(value, str) else value


class TeiEmbedRequest(BaseModel):
    """``POST /embed`` and ``/embed_all``, as in text-embeddings-inference."""

    model_config = ConfigDict(extra="ignore")

    inputs: StrictStr | list[StrictStr]
    normalize: StrictBool = True
    truncate: StrictBool | None = None
    truncation_direction: Literal["right", "left"] = "right"

    _lower = field_validator("truncation_direction", mode="before")(_direction)


class TokenizeRequest(BaseModel):
    """``POST /tokenize``: token ids and character offsets of each input."""

    model_config = ConfigDict(extra="ignore")

    inputs: StrictStr | list[StrictStr]
    add_special_tokens: StrictBool = True
