"""asgigreen: asgiref's sync/async bridges, also for gevent-monkeypatched processes."""

__version__ = "0.1.0"
