# syntax=docker/dockerfile:1
# Two stages on the official slim Python image: build syncd and its dependencies
# into a virtual environment, then copy that environment into a clean image that
# runs as an unprivileged user. Every package comes from PyPI, at the versions and
# hashes pinned in requirements.lock (refresh it with `make lock`).

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/syncd
WORKDIR /src
# The pinned dependencies first (their layer is reused until the lock changes);
# pip refuses any file whose hash is not in the lock.
COPY requirements.lock ./
RUN /opt/syncd/bin/python -m pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY syncd ./syncd
COPY migrations ./migrations
# syncd itself, without letting pip resolve anything the lock did not pin. A regular
# (not editable) install; pip compiles the bytecode here, since the runtime user
# cannot write to /opt/syncd.
RUN /opt/syncd/bin/python -m pip install --no-deps . \
    && /opt/syncd/bin/python -m pip check \
    && /opt/syncd/bin/syncd --version

FROM python:3.11-slim
ENV PATH=/opt/syncd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SYNCD_CONFIG=/etc/syncd/config.yaml \
    SYNCD_DATABASE_URL=sqlite:////var/lib/syncd/syncd.db \
    SYNCD_HEALTH_URL=http://127.0.0.1:8080/healthz
RUN groupadd --system --gid 10001 syncd \
    && useradd --system --uid 10001 --gid syncd --home-dir /var/lib/syncd --shell /usr/sbin/nologin syncd \
    && mkdir -p /var/lib/syncd /etc/syncd \
    && chown syncd:syncd /var/lib/syncd
COPY --from=build /opt/syncd /opt/syncd
COPY config.example.yaml /etc/syncd/config.example.yaml
USER 10001:10001
WORKDIR /var/lib/syncd
VOLUME ["/var/lib/syncd"]
EXPOSE 8080
# /healthz answers while the process lives; SYNCD_HEALTH_URL must match observability.listen.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['SYNCD_HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["syncd"]
CMD ["run"]
