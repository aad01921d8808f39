# syntax=docker/dockerfile:1
# Two stages on the official slim Python image: build wheels, then install them
# into a clean image that runs as an unprivileged user. Everything comes from PyPI.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY syncd ./syncd
COPY migrations ./migrations
RUN python -m pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SYNCD_CONFIG=/etc/syncd/config.yaml \
    SYNCD_DATABASE_URL=sqlite:////var/lib/syncd/syncd.db \
    SYNCD_HEALTH_URL=http://127.0.0.1:8080/healthz
COPY --from=build /wheels /wheels
RUN python -m pip install --no-index --find-links /wheels syncd \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 syncd \
    && useradd --system --uid 10001 --gid syncd --home-dir /var/lib/syncd --shell /usr/sbin/nologin syncd \
    && mkdir -p /var/lib/syncd /etc/syncd \
    && chown syncd:syncd /var/lib/syncd
COPY config.example.yaml /etc/syncd/config.example.yaml
USER 10001:10001
WORKDIR /var/lib/syncd
VOLUME ["/var/lib/syncd"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['SYNCD_HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["syncd"]
CMD ["run"]
