"""A login for the admin in development: ``make admin`` (``python -m devtools.admin_login``).

Creates the superuser ``admin`` (``--username`` to name another), or gives the
existing one a new password, and prints where to log in with what. The password
is random and shown only here, once. Development only: with ``DJANGO_DEBUG=0``
it refuses, and ``manage.py createsuperuser`` is the way.
"""

import argparse
import os
import secrets
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.admin_login", description=__doc__)
    parser.add_argument("--username", default="admin")
    parser.add_argument(
        "--url",
        default=f"http://{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}",
        help="where `make run` serves the app (HOST and PORT)",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_celery.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model

    if not settings.DEBUG:
        print(
            "make admin is for development (DJANGO_DEBUG=1); "
            "in production use: python manage.py createsuperuser",
            file=sys.stderr,
        )
        return 2

    password = secrets.token_urlsafe(12)
    user, created = get_user_model().objects.get_or_create(username=args.username)
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    print(
        f"{'Created' if created else 'Gave a new password to'} the superuser {args.username!r}.\n"
        f"Log in at {args.url.rstrip('/')}/admin/ as {args.username} with the password: {password}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
