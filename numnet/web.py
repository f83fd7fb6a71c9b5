"""`python -m numnet.web [--model PATH] [--host 127.0.0.1] [--port 8000]`: the drawing page.

The page and its server live with the Tk app in numnet.gui; this module is the command's name.
"""

import sys

from numnet.gui.web import main

if __name__ == "__main__":
    sys.exit(main())
