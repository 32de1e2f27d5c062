"""``python -m sam``: see :mod:`sam.cli`."""

from .cli import main

raise SystemExit(main())
