"""Settings of the django-scim2 test peer.

The harness (tests/common/django_server.rs) sets, for each server it starts:
- SCIM_PEER_PORT: the port waitress listens on, which django-scim2 puts in every location;
- SCIM_PEER_TOKEN: the bearer token the server accepts;
- SCIM_PEER_DB: the SQLite database file (a fresh copy of the migrated template).

Only integration glue here: models, urls, authentication. Everything SCIM is django-scim2's
own default behaviour, deliberately left as it is.
"""
import os

SECRET_KEY = "scimsync-test-peer-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_scim",
    "scimapp",
]

MIDDLEWARE = [
    "scimproj.auth.BearerTokenMiddleware",
]

ROOT_URLCONF = "scimproj.urls"
WSGI_APPLICATION = "scimproj.wsgi.application"

AUTH_USER_MODEL = "scimapp.User"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SCIM_PEER_DB", "db.sqlite3"),
        # Without IMMEDIATE, concurrent writes fail with "database is locked".
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

USE_TZ = True
TIME_ZONE = "UTC"

SCIM_SERVICE_PROVIDER = {
    "NETLOC": "127.0.0.1:" + os.environ.get("SCIM_PEER_PORT", "8000"),
    "SCHEME": "http",
    "GROUP_MODEL": "scimapp.models.Group",
    "AUTHENTICATION_SCHEMES": [{"type": "oauthbearertoken", "name": "Bearer"}],
    "EXPOSE_SCIM_EXCEPTIONS": True,
}

# Warnings and errors (django-scim2 logs the exception behind every 500) go to stderr, which
# the harness writes to the server's log file.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
