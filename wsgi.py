"""WSGI entry point: ``gunicorn wsgi:app``; ``flask --app wsgi …`` for the CLI."""
from rma_service import create_app

app = create_app()
