import sys

from audiograph.cli import main

sys.exit(main())
