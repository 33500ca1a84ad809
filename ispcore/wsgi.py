"""WSGI entry point (gunicorn in production, see deploy/)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispcore.settings")
application = get_wsgi_application()
