"""``python -m nowramp_auth`` runs the ``nowramp-auth`` command line."""

import sys

from .cli import main

sys.exit(main())
