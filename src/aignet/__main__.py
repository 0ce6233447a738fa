"""``python -m aignet`` (also what ``torchrun -m aignet`` runs)."""

import sys

from aignet.cli import main

sys.exit(main())
