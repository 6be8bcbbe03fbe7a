import sys

from graphrec.cli import main

sys.exit(main())
