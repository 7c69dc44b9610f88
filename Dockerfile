# One image for the authserver, the demo broker, the demo calendar provider and the agent.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# An image is for deployment: the authserver refuses development defaults (an http issuer,
# generated secrets, `authserver demo`) unless a container sets AUTHSERVER_ENV=development.
ENV AUTHSERVER_ENV=production
RUN useradd --create-home --uid 10001 app
WORKDIR /app

COPY pyproject.toml README.md alembic.ini ./
COPY authserver ./authserver
COPY vault ./vault
COPY demo_agent ./demo_agent
COPY migrations ./migrations
# Editable install: Alembic finds migrations/ beside the package.
RUN pip install --upgrade pip && pip install -e . && chown -R app /app

USER app
EXPOSE 8000
# Several workers; gthread so the approval page's event stream does not hold a whole worker.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "4", "--worker-class", "gthread", \
     "--threads", "8", "--forwarded-allow-ips", "*", "authserver:create_app()"]
