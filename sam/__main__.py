"""``python -m sam``: see :mod:`sam.cli`."""

from sam.cli import main

raise SystemExit(main())
