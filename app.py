"""Start the citewise web app: ``python app.py``, then open http://127.0.0.1:7860.

The same as ``citewise app`` (see ``rag/webapp.py`` and ``python app.py --help``).
"""

import sys

from rag.webapp import main

if __name__ == "__main__":
    sys.exit(main())
