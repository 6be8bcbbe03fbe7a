import sys

from gnn.cli import main

sys.exit(main())
