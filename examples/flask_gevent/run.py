"""Serve the example with gevent's own WSGI server: ``python examples/flask_gevent/run.py``.

Listens on 127.0.0.1:$PORT (8000 by default). The same app runs under
gunicorn with ``gunicorn -c examples/flask_gevent/gunicorn.conf.py``.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# app.py calls asgigreen.patch_all() before anything else is imported.
from app import app
from gevent.pywsgi import WSGIServer

if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"Serving on http://127.0.0.1:{port}/  (try /hello?n=1)", flush=True)
    WSGIServer(("127.0.0.1", port), app).serve_forever()
