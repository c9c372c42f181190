import sys

from roadseg.cli import main

sys.exit(main())
