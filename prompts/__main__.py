"""``python -m prompts``: see :mod:`prompts.cli`."""

from prompts.cli import main

raise SystemExit(main())
