# The sidecar and the demo upstream share this image (different commands).
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 lcr
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY sidecar sidecar
COPY audit_store audit_store
COPY demo_upstream demo_upstream
COPY bundles bundles
COPY dev dev
RUN pip install --no-cache-dir --require-hashes -r requirements.lock && pip install --no-cache-dir --no-deps . && mkdir -p /app/var && chown lcr /app/var
USER lcr
EXPOSE 8080
# Ready, not just alive: OPA up with a verified, recent bundle and the audit store writable.
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"
CMD ["sh", "-c", "mkdir -p ${PROMETHEUS_MULTIPROC_DIR:-/tmp/prometheus} && exec gunicorn --bind 0.0.0.0:8080 --workers 2 --config python:sidecar.gunicorn_conf 'sidecar:create_app()'"]
