"""The one settings module. Everything that differs between a first run, CI and
production comes from the environment (see docs/CONFIGURATION.md); bad values stop
the process at start with a message naming the variable.
"""
from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from ispcore.env import (
    env_bool,
    env_database,
    env_int,
    env_list,
    env_redis_url,
    env_str,
    env_timezone,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ISP_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (make run sets both for you).")
    SECRET_KEY = "insecure-development-key-only-for-DEBUG"

# Fernet keys for secrets stored encrypted at rest (customer passwords, NAS secrets,
# router API passwords). A comma-separated list: the first encrypts, all decrypt, so a
# key can be rotated without a flag day.
_raw_keys = env_list("ENCRYPTION_KEY", [])
if not _raw_keys:
    if not DEBUG:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEY must be set when DEBUG is off: a Fernet key "
            "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
        )
    _raw_keys = [base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()]
for _key in _raw_keys:
    try:
        if len(base64.urlsafe_b64decode(_key.encode())) != 32:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured("ENCRYPTION_KEY holds a value that is not a Fernet key (32 url-safe base64 bytes).") from None
ENCRYPTION_KEYS = _raw_keys

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

TIME_ZONE = env_timezone("TIME_ZONE", "Asia/Dhaka")
USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = env_str("LANGUAGE_CODE", "en")
LANGUAGES = [("en", _("English")), ("bn", _("Bangla"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
DEFAULT_CURRENCY = "BDT"

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'isp.sqlite3'}")}
REDIS_URL = env_redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "ispcore.core",
    "ispcore.accounts",
    "ispcore.catalog",
    "ispcore.subscribers",
    "ispcore.billing",
    "ispcore.cards",
    "radius",
    "mikrotik",
    "ipam",
    "notifications",
    "portals",
]
AUTH_USER_MODEL = "accounts.User"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "ispcore.urls"
WSGI_APPLICATION = "ispcore.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "ispcore.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ispcore.api.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ISP billing and RADIUS API",
    "DESCRIPTION": "Tenants, the reseller tree, packages, customers, NAS and the money ledger.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"CardStatusEnum": "ispcore.cards.models.RechargeCard.Status"},
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# The schedule lives in code so it is reviewed and versioned; per-tenant times
# ("00:05 on the 1st in the tenant's zone") are decided inside the tasks.
CELERY_BEAT_SCHEDULE = {
    "expire-due-customers": {"task": "subscribers.expire_due", "schedule": 60.0},
    "expiry-warnings": {"task": "subscribers.send_expiry_warnings", "schedule": 300.0},
    "monthly-billing": {"task": "billing.monthly_billing_tick", "schedule": 300.0},
    "minute-billing": {"task": "billing.bill_minutes", "schedule": 60.0},
    "suspend-overdue": {"task": "billing.suspend_overdue", "schedule": crontab(minute=10)},
    "cards-expire": {"task": "cards.expire_cards", "schedule": crontab(minute=7)},
    "mikrotik-sync": {"task": "mikrotik.sync_all_routers", "schedule": crontab(minute="*/15")},
    "radius-close-stale-sessions": {"task": "radius.close_stale_sessions", "schedule": crontab(minute="*/5")},
    "ledger-consistency-check": {
        "task": "billing.check_ledger_consistency",
        "schedule": crontab(minute=17, hour=3),
    },
    # SMS: queued messages are also kicked on commit; these catch up after downtime.
    "sms-dispatch": {"task": "notifications.dispatch", "schedule": 10.0, "options": {"expires": 10}},
    "sms-outbox": {"task": "notifications.process_outbox", "schedule": 5.0, "options": {"expires": 5}},
    "sms-housekeeping": {"task": "notifications.housekeeping", "schedule": 30.0, "options": {"expires": 30}},
    "sms-inbox": {"task": "notifications.process_inbox", "schedule": 5.0, "options": {"expires": 5}},
    "sms-webhooks": {"task": "notifications.deliver_webhooks", "schedule": 10.0, "options": {"expires": 10}},
    "sms-balances": {"task": "notifications.refresh_balances", "schedule": 600.0, "options": {"expires": 600}},
}
# Tasks defined outside a tasks.py module (the inbox and the webhook sender).
CELERY_IMPORTS = ["notifications.inbox", "notifications.webhooks"]

# SMS sending (notifications.worker): a claimed message's lease; how long a message left
# 'submitting' by a crashed worker waits for a delivery receipt before it is resent
# (must exceed the provider's receipt latency); how long one dispatch task runs.
SMS_CLAIM_LEASE_SECONDS = env_int("SMS_CLAIM_LEASE_SECONDS", 120)
SMS_SUBMITTING_RESEND_AFTER = env_int("SMS_SUBMITTING_RESEND_AFTER", 3600)
SMS_DISPATCH_SECONDS = env_int("SMS_DISPATCH_SECONDS", 50)
SMS_RECEIPT_ASYNC_COMMIT = env_bool("SMS_RECEIPT_ASYNC_COMMIT", False)  # durable receipts; see notifications.reports.ReceiptWriter
SMS_DLR_MATCH_DAYS = env_int("SMS_DLR_MATCH_DAYS", 3)  # receipts match parts submitted this recently (ids recycle)
SMS_DISPATCH_ON_COMMIT = env_bool("SMS_DISPATCH_ON_COMMIT", True)  # kick a dispatch task when a send commits

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# RADIUS server (radius/): every value has a default in the code; these are the ones an
# operator tunes. The reject delay slows password guessing (FreeRADIUS does the same).
RADIUS_REJECT_DELAY = env_int("RADIUS_REJECT_DELAY_MS", 1000, minimum=0, maximum=10000) / 1000
RADIUS_WORKERS = env_int("RADIUS_WORKERS", os.cpu_count() or 1, minimum=1, maximum=64)
# radiusd on PostgreSQL writes the authentication log from a copier process of its own
# (radius/authlog_copier.py); false: from a thread of each worker, as tests and SQLite do.
RADIUS_AUTH_LOG_PROCESS = env_bool("RADIUS_AUTH_LOG_PROCESS", True)
# Router sync runs older than this many days are deleted (each router's latest is kept).
MIKROTIK_SYNC_RUN_DAYS = env_int("MIKROTIK_SYNC_RUN_DAYS", 30, minimum=1, maximum=3650)
# Seconds after an ACKed Disconnect-Request to check the session really ended; a survivor is
# kicked through the router API (ispcore/subscribers/access.py).
CUT_OFF_VERIFY_SECONDS = env_int("CUT_OFF_VERIFY_SECONDS", 30, minimum=1, maximum=3600)
# The address routers reach our RADIUS server on; MikroTik sync writes it into each router's
# /radius entry (a router's own MikroTik settings override it). Empty: /radius is not managed.
MIKROTIK_RADIUS_ADDRESS = env_str("MIKROTIK_RADIUS_ADDRESS", "").strip()
if MIKROTIK_RADIUS_ADDRESS:
    import ipaddress

    try:
        ipaddress.ip_address(MIKROTIK_RADIUS_ADDRESS)
    except ValueError:
        raise ImproperlyConfigured(f"MIKROTIK_RADIUS_ADDRESS must be an IP address, not {MIKROTIK_RADIUS_ADDRESS!r}") from None

# Demo and first-run conveniences.
WEB_PORT = env_int("WEB_PORT", 8000, minimum=1, maximum=65535)
