"""``python -m study`` is the ``study`` command."""

from study.cli.main import main

raise SystemExit(main())
