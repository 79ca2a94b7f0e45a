"""Settings with Channels' in-memory channel layer."""

SECRET_KEY = "doctor-case-not-secret"
INSTALLED_APPS: list[str] = []
ROOT_URLCONF = "layersproject.urls"
DATABASES: dict[str, dict[str, str]] = {}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
