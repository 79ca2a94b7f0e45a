"""``gunicorn -c examples/flask_gevent/gunicorn.conf.py`` (from any directory).

Plain ``-k gevent`` is enough here: gunicorn's worker patches first, then
imports app.py, whose first lines call asgigreen.patch_all().
"""

import os
from pathlib import Path

chdir = str(Path(__file__).resolve().parent)
wsgi_app = "app:app"
worker_class = "gevent"
workers = 1
worker_connections = 1000
bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
# No preload_app: it would import the app in the master, before any patching.
