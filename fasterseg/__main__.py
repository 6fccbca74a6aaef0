"""``python -m fasterseg`` (and ``torchrun -m fasterseg``) run the command-line interface."""

import sys

from .cli import main

sys.exit(main())
