"""``gunicorn -c examples/django_gevent/gunicorn.conf.py`` (from any directory).

The worker class is gunicorn's gevent worker plus asgigreen.patch_all(),
called in each worker after gevent patches and before project.wsgi (and so
Django) is imported. Run ``python manage.py migrate`` first, or use run.py.
"""

import os
from pathlib import Path

chdir = str(Path(__file__).resolve().parent)
wsgi_app = "project.wsgi:application"
worker_class = "asgigreen.gunicorn.GeventWorker"
workers = 1
worker_connections = 1000
bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
# No preload_app: it would import Django in the master, before any patching.
