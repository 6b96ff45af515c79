"""``python -m trackpipe.cli``: what ``trackpipe up`` starts its roles with."""

import sys

from trackpipe.cli import main

sys.exit(main())
