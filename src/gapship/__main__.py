"""python -m gapship"""

import sys

from gapship.cli import main

sys.exit(main())
