# The same processes `make run` starts, one per container: pick with the command.
#   web:    uvicorn config.asgi:application --host 0.0.0.0 --port 8000 --workers 2
#   worker: celery -A config worker --queues admission,celery --concurrency 2   (with DB_POOL=false)
#   beat:   celery -A config beat                     (with DB_POOL=false)
# Configure with the environment variables listed in README.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=config.settings
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input

RUN useradd --create-home app
USER app
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --no-input && exec uvicorn config.asgi:application --host 0.0.0.0 --port ${PORT:-8000} --workers ${WEB_WORKERS:-2} --loop uvloop --http httptools"]
