"""``python -m interp_app`` is the same as the ``interp`` command."""

import sys

from interp_app.cli import main

sys.exit(main())
