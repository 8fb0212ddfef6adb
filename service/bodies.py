"""Request bodies off the wire: read bounded, decoded (``Content-Encoding``), parsed, validated.

Every client mistake here is an :class:`ApiError` with the status a client can act on: 413 past
the size limit, 415 for an encoding we do not speak, 400 for bytes that are not JSON (or not the
gzip they claim to be), 422 for JSON that does not fit the request model. Nothing else escapes.
"""

from __future__ import annotations

import zlib
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from .errors import ApiError

M = TypeVar("M", bound=BaseModel)
# zlib ``wbits`` per accepted Content-Encoding: gzip's header and trailer, or zlib's
# (RFC 9110 §8.4.1: "deflate" is the zlib format; "x-gzip" is to be read as gzip).
DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
IDENTITY = ("", "identity")


def too_large(limit: int, decoded: bool = False) -> ApiError:
    where = " once decoded" if decoded else ""
    return ApiError(413, f"request body exceeds {limit} bytes{where}", code="body_too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The body as JSON bytes, refused with 413 as soon as it passes ``limit`` bytes.

    A compressed body is decoded as it arrives and refused as soon as the *decoded* size passes
    ``limit``: a gzip bomb (100 MB of zeros in ~100 kB) costs at most ``limit`` bytes of output,
    never the whole inflation. A plain body stays a straight read.
    """
    encoding = request.headers.get("content-encoding", "").strip().lower()
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    if encoding in IDENTITY:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large(limit)
        return bytes(body)
    if encoding not in DECODERS:
        raise ApiError(
            415,
            "unsupported Content-Encoding; send gzip, deflate or identity",
            code="unsupported_encoding",
        )
    return await read_compressed(request, limit, DECODERS[encoding], encoding)


async def read_compressed(request: Request, limit: int, wbits: int, name: str) -> bytes:
    """Inflate the body chunk by chunk, never producing more than ``limit + 1`` bytes.

    The wire size is bounded by ``limit`` too, so a stream of empty deflate blocks cannot keep
    the connection busy forever. Concatenated gzip members (RFC 1952 §2.2) are all read.
    """
    corrupt = ApiError(400, f"the body is not valid {name} data", code="invalid_encoding")
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    wire = 0
    async for chunk in request.stream():
        wire += len(chunk)
        if wire > limit:
            raise too_large(limit)
        data = chunk
        try:
            while data:
                if inflater.eof:  # a further gzip member; zlib-wrapped deflate has exactly one
                    if wbits == zlib.MAX_WBITS:
                        raise corrupt
                    inflater = zlib.decompressobj(wbits)
                # At most one byte past the limit: enough to know the body is too large.
                out += inflater.decompress(data, limit + 1 - len(out))
                if len(out) > limit:
                    raise too_large(limit, decoded=True)
                data = inflater.unconsumed_tail or inflater.unused_data
        except zlib.error:
            raise corrupt from None
    # zlib reports the end of a stream only once all of its output has been produced.
    if not inflater.eof:
        raise ApiError(400, f"the {name} body ends before its stream does", code="invalid_encoding")
    return bytes(out)


def decode(raw: bytes, model: type[M]) -> M:
    """``raw`` JSON as ``model``: 400 for bytes that are not JSON, 422 for JSON the model refuses.

    The 422 names the first offending field (``input``, not pydantic's union member
    ``input.str``) so OpenAI-style clients can point at it.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON body: {exc}", code="invalid_json") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        message = f"{path}: {first['msg']}" if path else first["msg"]
        param = str(first["loc"][0]) if first["loc"] else None
        raise ApiError(422, message, param, "invalid_value") from None


async def parse(request: Request, model: type[M], limit: int) -> M:
    return decode(await read_body(request, limit), model)
