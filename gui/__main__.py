"""`python -m numnet.gui`: the Tkinter drawing app."""

import sys

from numnet.gui.app import main

sys.exit(main())
