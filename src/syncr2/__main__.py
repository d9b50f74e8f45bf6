"""``python -m syncr2``: the package's command line (see ``syncr2.cli``)."""

from .cli import main

raise SystemExit(main())
