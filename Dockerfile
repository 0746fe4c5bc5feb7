# The RMA service behind gunicorn. WeasyPrint needs Pango and a font; nothing is fetched at
# run time. Build: docker build -t rma-service .  Run: see docker-compose.yml.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 FLASK_APP=wsgi
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
# .dockerignore keeps the venv, the local databases, .git, tests and benchmarks out.
COPY . .
RUN useradd --system --home /app rma && mkdir -p instance && chown rma instance
USER rma

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
# Migrations are safe to run twice, and concurrent ones wait for each other, so every start
# applies them first. gunicorn.conf.py sets an access log format without the Basic-auth user
# (which would be an API key); naming it makes a missing file an error, not a silent default.
CMD ["sh", "-c", "flask db upgrade && exec gunicorn --config gunicorn.conf.py --bind 0.0.0.0:8000 --workers ${WEB_CONCURRENCY:-2} --access-logfile - wsgi:app"]
