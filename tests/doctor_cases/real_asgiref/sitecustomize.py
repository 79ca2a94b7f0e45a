"""The real asgiref, imported at interpreter start-up (as an APM agent's sitecustomize might).

Put this directory on PYTHONPATH: whatever application is then served, the
real asgiref is there before asgigreen can stand in for it (``asgiref.real``).
"""

import asgiref.sync  # noqa: F401
