# One image for web, worker and beat; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY portal portal
COPY worker worker
COPY templates templates
COPY static static
COPY migrations migrations
COPY wsgi.py .
RUN useradd --create-home portal && mkdir -p /data/storage /data/import /data/instance /data/metrics \
    && chown -R portal /data
USER portal
EXPOSE 8000
CMD ["gunicorn", "-c", "python:portal.gunicorn_conf", "wsgi:app", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4"]
