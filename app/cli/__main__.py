"""`python -m anomascope.app.cli`, as the tests, `train --processes` and bench/device/ run the command line."""

import sys

from anomascope.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
