#!/bin/sh
# deploy/release.sh: once per release, before the app servers start: bring the
# database's tables up to date, and copy the static files to STATIC_ROOT, where
# nginx serves them.
set -e
python manage.py migrate --noinput
python manage.py collectstatic --noinput
