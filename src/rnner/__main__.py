"""`python -m rnner`: the same as the `rnner` command."""

from .cli import main

raise SystemExit(main())
