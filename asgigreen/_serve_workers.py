"""``asgigreen serve --workers N``: uvicorn's supervisor, worker processes patched first.

uvicorn's :class:`~uvicorn.supervisors.Multiprocess` pickles the
:class:`uvicorn.Config` into each worker, a fresh interpreter (spawned, not
forked). The worker then asks the config for its event loop factory before
anything else and loads the application inside the loop. :class:`WorkerConfig`
uses those two calls:

* :meth:`WorkerConfig.get_loop_factory` prepares the process
  (:func:`asgigreen.serve.prepare_process`: gevent patching, the asgiref
  alias, the hub) and, on the gevent hub, gives asyncio's selector loop,
  whose selector is gevent's once patched;
* :meth:`WorkerConfig.load` imports the application by the same rule as
  one-process ``asgigreen serve`` (WSGI wrapped in ``WsgiToAsgi``).

uvicorn itself, asyncio and ssl are imported by then (unpickling the config
needs them); nothing has created sockets, locks or threads that matter
(uvicorn's health-check thread is a real thread and stays one). gevent's
warning about ssl imported before patching is silenced for that reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

import uvicorn

from .serve import load_application, prepare_process

__all__ = ["WorkerConfig"]

logger = logging.getLogger("uvicorn.error")


class WorkerConfig(uvicorn.Config):
    """A uvicorn Config whose worker processes patch before loading the application."""

    def __init__(
        self,
        target: str,
        *,
        hub: str,
        interface: str = "auto",
        factory: bool = False,
        **options: Any,
    ) -> None:
        self.asgigreen_target = target
        self.asgigreen_hub = hub
        self.asgigreen_interface = interface
        self.asgigreen_factory = factory
        super().__init__(target, **options)

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ssl.*", module="gevent.*")
            prepare_process(self.asgigreen_hub)
        if self.asgigreen_hub == "gevent":
            return asyncio.SelectorEventLoop
        return super().get_loop_factory()

    def load(self) -> None:
        if not self.loaded:
            application, description = load_application(
                self.asgigreen_target,
                interface=self.asgigreen_interface,
                factory=self.asgigreen_factory,
            )
            self.app = application
            self.interface = "asgi3"
            logger.info(
                "asgigreen serve worker [%d]: %s; hub %s",
                os.getpid(),
                description,
                self.asgigreen_hub,
            )
        super().load()
