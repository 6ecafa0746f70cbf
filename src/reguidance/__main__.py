"""``python -m reguidance`` is the ``reguidance`` command."""

import sys

from .cli import main

sys.exit(main())
