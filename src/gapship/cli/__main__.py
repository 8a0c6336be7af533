"""python -m gapship.cli"""

import sys

from gapship.cli import main

sys.exit(main())
