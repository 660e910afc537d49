"""``python -m affectlens`` is the same as the ``affectlens`` command."""

from affectlens.cli import main

raise SystemExit(main())
