# The voucher service image: used by docker-compose.yml for the `migrate` step and the `api`.
# Configuration comes only from the environment at run time (DATABASE_URL, VOUCHER_*): the image
# holds no database URL, password or key.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, pinned by the runtime lock (no test or lint tools: those are in
# requirements-dev.lock), so this layer is reused until the lock changes.
COPY requirements.lock ./
RUN pip install -r requirements.lock

# Then the service itself, without resolving dependencies again. Installed in editable mode on
# purpose: the CLI finds alembic.ini and migrations/ next to the source tree (/app).
COPY . .
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin voucher

USER voucher
EXPOSE 8000

CMD ["voucher", "serve", "--host", "0.0.0.0", "--port", "8000"]
