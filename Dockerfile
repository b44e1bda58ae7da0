# The sidecar and the demo upstream share this image (different commands).
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 lcr
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sidecar sidecar
COPY audit_store audit_store
COPY demo_upstream demo_upstream
COPY bundles bundles
COPY dev dev
RUN pip install --no-cache-dir . && mkdir -p /app/var && chown lcr /app/var
USER lcr
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
CMD ["gunicorn", "--bind", "0.0.0.0:8080", "--workers", "2", "sidecar:create_app()"]
