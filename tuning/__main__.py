import sys

from tuning.search import main

sys.exit(main())
