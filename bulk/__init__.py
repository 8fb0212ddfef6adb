"""The bulk-embedding client: ``python -m bulk INPUT --output OUT`` embeds every text of a file
through any OpenAI-compatible server, in input order, resumable after a kill."""

from .client import BatchFailed
from .config import BulkConfig, RetryPolicy
from .runner import RunSummary, run
from .sources import InputError

__all__ = ["BatchFailed", "BulkConfig", "InputError", "RetryPolicy", "RunSummary", "run"]
