import sys

from feedamp.cli import main

sys.exit(main())
