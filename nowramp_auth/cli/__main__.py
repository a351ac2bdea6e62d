"""``python -m nowramp_auth.cli``."""

import sys

from . import main

sys.exit(main())
