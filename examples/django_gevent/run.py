"""One command: ``python examples/django_gevent/run.py``.

Creates the SQLite tables, then replaces itself with gunicorn running the
project in a gevent worker on 127.0.0.1:$PORT (8000 by default).
"""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    subprocess.run(
        [sys.executable, str(HERE / "manage.py"), "migrate", "--noinput", "--verbosity=0"],
        cwd=HERE,
        check=True,
    )
    port = os.environ.get("PORT", "8000")
    print(f"Serving on http://127.0.0.1:{port}/  (try /hello?n=you and /report)", flush=True)
    config = str(HERE / "gunicorn.conf.py")
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "-c", config])
