"""``gunicorn -k asgigreen.serve.GunicornWorker``: ``asgigreen serve`` under gunicorn.

For deployments that keep gunicorn as their process manager (its config
file, ``--workers``, ``--max-requests``, graceful reloads) while moving from
``-k gevent`` to an ASGI server::

    gunicorn -k asgigreen.serve.GunicornWorker -w 4 -b 127.0.0.1:8000 mysite.wsgi:application

The master stays unpatched and never imports the application (don't use
``--preload``). Each worker, after the fork:

1. patches (:func:`asgigreen.serve.prepare_process`; the hub is ``gevent``
   unless ``ASGIGREEN_HUB=threads``);
2. lets gunicorn import the application, WSGI or ASGI (detected as
   ``asgigreen serve`` does; a WSGI one is wrapped in ``WsgiToAsgi``);
3. serves it with uvicorn on the hub's event loop, on the sockets gunicorn
   opened, telling gunicorn it is alive every ``--timeout`` seconds.

SIGTERM (gunicorn's graceful stop) lets uvicorn finish the requests in
flight; SIGQUIT and SIGINT stop at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

import uvicorn
from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from gunicorn.workers.base import Worker  # type: ignore[import-untyped]

from .serve import detect_interface, prepare_process, uvicorn_options

__all__ = ["GunicornWorker"]


class GunicornWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker running uvicorn in a gevent-patched process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hub_name = os.environ.get("ASGIGREEN_HUB", "").strip().lower() or "gevent"
        # uvicorn's messages go where gunicorn's do.
        for name, source in (("uvicorn.error", self.log.error_log), ("uvicorn.access", None)):
            target = logging.getLogger(name)
            origin = source if source is not None else self.log.access_log
            target.handlers = origin.handlers
            target.setLevel(origin.level)
            target.propagate = False

    def init_process(self) -> None:
        prepare_process(self.hub_name)
        if self.hub_name == "gevent":
            from gevent import hub

            hub.reinit()  # as gunicorn's own gevent worker does after the fork
        super().init_process()

    def init_signals(self) -> None:
        # uvicorn installs its own SIGINT/SIGTERM handling while it serves;
        # defaults elsewhere so exit statuses reach the master unchanged.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.siginterrupt(signal.SIGUSR1, False)

    def run(self) -> None:
        from . import hubs
        from .compatibility import guarantee_single_callable
        from .wsgi import WsgiToAsgi

        application = self.wsgi
        if detect_interface(application) == "wsgi":
            application = WsgiToAsgi(application)
        else:
            application = guarantee_single_callable(application)
        level = logging.getLevelName(self.log.error_log.level).lower()
        options = uvicorn_options(self.hub_name, level if isinstance(level, str) else "info")
        options.update(log_config=None, log_level=None)
        config = uvicorn.Config(
            application,
            timeout_keep_alive=self.cfg.keepalive,
            timeout_notify=self.timeout,
            callback_notify=self._notify,
            limit_max_requests=self.max_requests,
            forwarded_allow_ips=self.cfg.forwarded_allow_ips,
            **options,
        )
        server = uvicorn.Server(config)

        def quit_now(sig: int, frame: Any) -> None:
            server.should_exit = server.force_exit = True

        signal.signal(signal.SIGQUIT, quit_now)
        # Fresh socket objects on copies of gunicorn's descriptors: they learn
        # they are TCP (gunicorn's say protocol 0), so asyncio sets
        # TCP_NODELAY on the connections they accept.
        sockets = [socket.socket(fileno=os.dup(sock.fileno())) for sock in self.sockets]
        if self.hub_name == "gevent":
            hubs.get_hub().run_on_new_loop(lambda: server.serve(sockets=sockets))
        else:
            asyncio.run(server.serve(sockets=sockets))
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    async def _notify(self) -> None:
        self.notify()
