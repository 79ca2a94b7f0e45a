"""A gunicorn worker: gunicorn's gevent worker plus :func:`asgigreen.patch_all`.

::

    gunicorn -k asgigreen.gunicorn.GeventWorker --worker-connections 1000 project.wsgi

or ``worker_class = "asgigreen.gunicorn.GeventWorker"`` in the config file.

Where it runs: in each worker process, after the fork, in gunicorn's
``init_process``. gunicorn's gevent worker first monkeypatches (its
``patch()``); this class then calls :func:`asgigreen.patch_all`, which finds
gevent already patched and installs the asgiref alias and the gevent hub;
only after that does gunicorn import the application (``load_wsgi``), and
with it Django or Flask. The master process is never patched and never
imports the app, so don't use ``--preload``: it imports the app in the
master, before any of this, and the worker then refuses to boot with a
:class:`~asgigreen.PatchOrderError` saying so.

``ASGIGREEN_REAL_THREADS=1`` in the environment sends every ``sync_to_async``
call to native threads, as ``patch_all(real_threads=True)`` does.
"""

from __future__ import annotations

from gunicorn.workers.ggevent import (  # type: ignore[import-untyped]
    GeventWorker as _GunicornGeventWorker,
)

from ._patching import PatchOrderError, patch_all

__all__ = ["GeventWorker"]


class GeventWorker(_GunicornGeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker that also runs :func:`asgigreen.patch_all`."""

    def patch(self) -> None:
        super().patch()  # gevent.monkey.patch_all() and the listening sockets
        try:
            patch_all()
        except PatchOrderError as exc:
            if not self.cfg.preload_app:
                raise
            hint = (
                "gunicorn's --preload (preload_app = True) imported the application in "
                "the master process, before this worker could patch: drop --preload."
            )
            raise PatchOrderError(list(exc.modules), exc.gevent_was_patched, hint) from None
