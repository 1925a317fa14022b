import sys

from hyperzero.cli import main

sys.exit(main())
