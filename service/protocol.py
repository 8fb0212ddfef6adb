"""Bodies of the HTTP API as pydantic models: strict requests (no silent coercion; whole-number
floats count as integers, as in JSON Schema), the responses and both error dialects
(``service.openapi`` documents the routes with them).

The routes read requests themselves (bounded, orjson, these models) and write responses with
orjson; the response models here only document what they write, and the fuzz tests hold the
service to them (tests/service/test_fuzz.py).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    RootModel,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from .chunking import LongInput
from .compact import EmbeddingType

DEADLINE_HEADER = "x-request-timeout-ms"
MODEL_HEADER = "x-model"  # which served model a TEI route addresses (TEI has one per server)


def deadline_seconds(raw: str) -> float | None:
    """``x-request-timeout-ms`` in seconds; None unless a positive, finite number. Checked in
    milliseconds: 5e-324 ms is positive, though 0.0 once converted to seconds."""
    try:
        given_ms = float(raw)
    except ValueError:
        return None
    return given_ms / 1000 if given_ms > 0 and math.isfinite(given_ms) else None


# A deployment's own bounds in a schema: {"x-limit": {"maximum": "vocabulary"}} becomes
# {"maximum": <the model's last token id>} when the document is built (``bind_limits``);
# {"x-limit": {"enum": "prompts"}} the list of the model's prompt names.
LIMIT_KEY = "x-limit"
Limit = Literal["vocabulary", "dimension", "inputs", "prompts"]
LimitValue = int | list[str]


class Documented:
    """JSON Schema keywords for the documentation only, added to the generated schema.

    The routes check these themselves and answer 400 or 413 with their own codes (an empty
    input, an unknown token id, too many inputs); as pydantic constraints they would turn into
    generic 422s, so validation stays as it is and only the document says it.
    """

    def __init__(self, keywords: dict[str, Any]) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(core_schema), **self.keywords}


def limited(**limits: Limit) -> Documented:
    return Documented({LIMIT_KEY: limits})


Text = Annotated[StrictStr, Documented({"minLength": 1})]
Texts = Annotated[list[Text], Documented({"minItems": 1}), limited(maxItems="inputs")]
TokenId = Annotated[StrictInt, Documented({"minimum": 0}), limited(maximum="vocabulary")]
TokenIds = Annotated[list[TokenId], Documented({"minItems": 1})]
Dimensions = Annotated[StrictInt, limited(maximum="dimension")]
PromptName = Annotated[StrictStr, limited(enum="prompts")]


def _whole_numbers(value: Any, depth: int = 2) -> Any:
    """``value`` with whole-number floats as ints, in lists nested up to ``depth`` deep."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list) and depth > 0:
        return [_whole_numbers(item, depth - 1) for item in value]
    return value


class OpenAIEmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: https://platform.openai.com/docs/api-reference/embeddings"""

    model_config = ConfigDict(extra="ignore")

    input: (
        Text
        | Texts
        | TokenIds
        | Annotated[list[TokenIds], Documented({"minItems": 1}), limited(maxItems="inputs")]
    )
    model: StrictStr | None = Field(None, description="the served model's id; others get 404")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Dimensions | None = Field(None, ge=1)
    user: StrictStr | None = None
    long_input: LongInput | None = Field(
        None,
        description="extension: an input over the model's window is cut (truncate), refused "
        "with 413 (error), or embedded whole (chunk: windows of the model's length sharing a "
        "few tokens, their vectors averaged by token count; usage counts every window's "
        "tokens); default: the server's truncate setting",
    )
    embedding_type: EmbeddingType = Field(
        "float",
        description="extension: float, or compact vectors as sentence-transformers' "
        "quantize_embeddings makes them: int8/uint8 per dimension over ranges calibrated at "
        "export on real text, binary/ubinary the sign bits packed 8 per byte (as int8 - 128 / "
        "uint8); after dimensions and normalisation; with encoding_format base64 the raw bytes",
    )
    prompt_name: PromptName | None = Field(
        None,
        description="extension: a prompt of the model (GET /info lists them) put before each "
        "text, as text-embeddings-inference's prompt_name; default: the model's default prompt",
    )

    @field_validator("input", "dimensions", mode="wrap")
    @classmethod
    def _whole_floats_are_integers(cls, value: Any, strict: ValidatorFunctionWrapHandler) -> Any:
        """Take ``5.0`` where an integer goes: JSON Schema counts it as one, so the document
        cannot promise otherwise (found by tests/service/test_protocol.py). Tried only after
        strict validation failed: a well-formed request pays nothing."""
        try:
            return strict(value)
        except ValidationError:
            return strict(_whole_numbers(value))


def _direction(value: object) -> object:
    # TEI spells the enum "Right"/"Left"; accept any case.
    return value.lower() if isinstance(value, str) else value


# TEI's truncation side, in any case.
Direction = Annotated[
    Literal["right", "left"],
    BeforeValidator(_direction),
    Documented({"enum": ["right", "left", "Right", "Left"], "description": "any case"}),
]


class TeiEmbedRequest(BaseModel):
    """``POST /embed``, as in text-embeddings-inference (``/embed_all``: its narrower twin)."""

    model_config = ConfigDict(extra="ignore")

    inputs: Text | Texts
    normalize: StrictBool = True
    truncate: StrictBool | None = Field(None, description="default: the server's setting")
    truncation_direction: Direction = "right"
    prompt_name: PromptName | None = Field(
        None,
        description="a prompt of the model (GET /info lists them) put before each input; "
        "default: the model's default prompt",
    )
    long_input: LongInput | None = Field(
        None,
        description="extension (/embed): truncate, error (413) or chunk (embedded whole in "
        "windows); given, it decides in place of truncate",
    )
    embedding_type: EmbeddingType = Field(
        "float", description="extension (/embed): float, int8, uint8, binary or ubinary"
    )


class TeiEmbedAllRequest(TeiEmbedRequest):
    """``POST /embed_all``: /embed's body; every token's vector has no windows to pool and no
    compact form, so ``long_input`` chunk and compact types are not among its values (422)."""

    long_input: Literal["truncate", "error"] | None = Field(
        None, description="extension: truncate or error (413); given, it decides over truncate"
    )
    embedding_type: Literal["float"] = Field("float", description="extension: float only")


class TeiRerankRequest(BaseModel):
    """``POST /rerank``, as in text-embeddings-inference: ``query`` against each of ``texts``."""

    model_config = ConfigDict(extra="ignore")

    query: Text
    texts: Texts
    truncate: StrictBool | None = Field(None, description="default: the server's setting")
    truncation_direction: Direction = "right"
    raw_scores: StrictBool = Field(False, description="the logit, not its sigmoid")
    return_text: StrictBool = False


class CohereDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: Text


class CohereRerankRequest(BaseModel):
    """``POST /v1/rerank``, as Cohere's and Jina's rerank APIs take it."""

    model_config = ConfigDict(extra="ignore")

    model: StrictStr | None = Field(None, description="a served model's id; others get 404")
    query: Text
    documents: Annotated[
        list[Text | CohereDocument], Documented({"minItems": 1}), limited(maxItems="inputs")
    ]
    top_n: StrictInt | None = Field(None, ge=1, description="answer the best n; default: all")
    return_documents: StrictBool = False

    @field_validator("top_n", mode="wrap")
    @classmethod
    def _whole_floats_are_integers(cls, value: Any, strict: ValidatorFunctionWrapHandler) -> Any:
        """``5.0`` is an integer to JSON Schema (as ``OpenAIEmbeddingRequest`` takes it)."""
        try:
            return strict(value)
        except ValidationError:
            return strict(_whole_numbers(value))


# TEI's PredictInput (router/src/http/types.rs): a string; a list whose first element is a
# string is ONE input of one or two texts; a list of lists is a batch of such inputs.
OneOrTwo = Annotated[list[Text], Field(min_length=1, max_length=2)]
PredictInputs = (
    Text | OneOrTwo | Annotated[list[OneOrTwo], Field(min_length=1), limited(maxItems="inputs")]
)


class TeiPredictRequest(BaseModel):
    """``POST /predict``, as in text-embeddings-inference."""

    model_config = ConfigDict(extra="ignore")

    inputs: PredictInputs = Field(
        description="a text, a pair [text, text], a one-text list [text], or a batch of "
        "one- and two-text lists"
    )
    truncate: StrictBool | None = Field(None, description="default: the server's setting")
    truncation_direction: Direction = "right"
    raw_scores: StrictBool = Field(False, description="the logits, not their softmax/sigmoid")


class TokenizeRequest(BaseModel):
    """``POST /tokenize``: token ids and character offsets of each input."""

    model_config = ConfigDict(extra="ignore")

    inputs: (
        StrictStr
        | Annotated[list[StrictStr], Documented({"minItems": 1}), limited(maxItems="inputs")]
    )
    add_special_tokens: StrictBool = True


REQUESTS: tuple[type[BaseModel], ...] = (
    OpenAIEmbeddingRequest,
    TeiEmbedRequest,
    TeiEmbedAllRequest,
    TokenizeRequest,
    TeiRerankRequest,
    CohereRerankRequest,
    TeiPredictRequest,
)


class ResponseBody(BaseModel):
    """A response body: exactly these keys (the fuzz tests check every answer against it)."""

    model_config = ConfigDict(extra="forbid")


class Embedding(ResponseBody):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | list[int] | str = Field(
        description="floats (ints for a compact embedding_type), or with encoding_format=base64 "
        "the little-endian float32 bytes (the int8/uint8 bytes)"
    )


class Usage(ResponseBody):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(ResponseBody):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage


class TeiEmbedResponse(RootModel[list[list[float]] | list[list[int]]]):
    """One pooled vector per input (ints for a compact embedding_type)."""


class TeiEmbedAllResponse(RootModel[list[list[list[float]]]]):
    """Per input, one vector per token (special tokens included, no padding)."""


class Rank(ResponseBody):
    index: int = Field(description="the text's position in the request")
    score: float
    text: str | None = Field(None, description="with return_text")


class TeiRerankResponse(RootModel[list[Rank]]):
    """One rank per text, best first."""


class Prediction(ResponseBody):
    score: float
    label: str


class TeiPredictResponse(RootModel[list[Prediction] | list[list[Prediction]]]):
    """Every label with its score, best first; per input for a batch."""


class RerankedDocument(ResponseBody):
    text: str


class RerankResult(ResponseBody):
    index: int = Field(description="the document's position in the request")
    relevance_score: float = Field(description="the sigmoid of the model's logit, in (0, 1)")
    document: RerankedDocument | None = Field(None, description="with return_documents")


class RerankUsage(ResponseBody):
    total_tokens: int


class CohereRerankResponse(ResponseBody):
    results: list[RerankResult]
    model: str
    usage: RerankUsage


class TokenInfo(ResponseBody):
    id: int
    text: str
    special: bool
    start: int = Field(description="character offset in the input; 0 for special tokens")
    stop: int


class TokenizeResponse(RootModel[list[list[TokenInfo]]]):
    """Per input, its tokens."""


class HealthResponse(ResponseBody):
    status: Literal["ok"]


class InfoResponse(BaseModel):
    """The default model, its backend, batching and limits, and under ``models`` each served
    model's own description; more keys may come."""

    model_config = ConfigDict(extra="allow")

    model_id: str
    dimension: int
    max_input_length: int
    backend: dict[str, Any]
    batching: dict[str, Any]
    limits: dict[str, Any]
    models: list[dict[str, Any]]


class ModelCard(ResponseBody):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(ResponseBody):
    object: Literal["list"]
    data: list[ModelCard]


class OpenAIErrorDetail(ResponseBody):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(ResponseBody):
    """The error body of the OpenAI-style routes (and of health, info, unknown routes)."""

    error: OpenAIErrorDetail


class TeiError(ResponseBody):
    """The error body of the TEI-style routes (/embed, /embed_all, /tokenize, /rerank,
    /predict, /)."""

    error: str
    error_type: str
