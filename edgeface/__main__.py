"""``python -m edgeface`` is the ``edgeface`` command."""

import sys

from .cli import main

sys.exit(main())
