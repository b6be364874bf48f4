"""The WSGI application that waitress serves: `python -m waitress scimproj.wsgi:application`."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scimproj.settings")

application = get_wsgi_application()
