import sys

from completer.cli.main import main

sys.exit(main())
