"""Entry point of ``python -m export``; all logic lives in :mod:`export.cli`."""

from .cli import main

raise SystemExit(main())
