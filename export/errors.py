"""The errors the export tool turns into one line on stderr and a non-zero exit code.

Anything a user can cause (a wrong name, a bad folder, an option the tool cannot honour) is an
:class:`ExportError`; the CLI prints its message and exits 2 without a traceback, because a
traceback would bury the one thing the user has to change. When the inputs were fine but the
exported graph is not (checker failure, parity beyond tolerance) it is a
:class:`ValidationError`, exit 1, so scripts can tell "fix your command" from "file a bug".
"""

from __future__ import annotations


class ExportError(Exception):
    """A problem with the user's input or environment: one clear line, exit code 2."""

    exit_code = 2


class ValidationError(ExportError):
    """The exported graph failed a check (onnx.checker, signature, numeric parity): exit 1."""

    exit_code = 1
