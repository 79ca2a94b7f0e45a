"""Apps that block gevent's hub on purpose, for tests/test_blocking.py.

``wsgi``: plain WSGI views under ``gunicorn -k gevent``, one calling
psycopg2 without psycogreen, one calling the unpatched ``time.sleep``.
``asgi``: an ASGI app whose view blocks inside ``sync_to_async``, under
``asgigreen serve``. ``records`` writes what the ``asgigreen`` logger logs
to a JSON-lines file the test reads, as a user's log handler would.
"""
