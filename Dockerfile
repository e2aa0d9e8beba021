# syntax=docker/dockerfile:1
# The Gonets image: one image for every role (`gonets worker --pool NAME`, `gonets scheduler`,
# `gonets api`, ...); Kubernetes picks the role with the container's args.
#
#   docker build -t gonets:dev .
#   docker run --rm gonets:dev --help
#
# Stage 1 builds a virtualenv with Gonets and its pinned dependencies; stage 2 copies only that
# virtualenv onto a clean slim Python: no compiler, no pip cache, no build files, no root.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/gonets
# the pinned dependencies first (a layer that survives code changes), then the code
COPY pyproject.toml README.md ./
RUN /opt/gonets/bin/python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--no-cache-dir', *deps])"
COPY core/ core/
COPY producers/ producers/
COPY workers/ workers/
COPY scheduler/ scheduler/
COPY sandbox/ sandbox/
COPY cli/ cli/
RUN /opt/gonets/bin/pip install --no-cache-dir --no-deps . \
 && /opt/gonets/bin/python -m compileall -q /opt/gonets/lib \
 && /opt/gonets/bin/gonets --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="gonets" \
      org.opencontainers.image.description="SMS and MTS Money payments through Belarusian and Russian providers" \
      org.opencontainers.image.licenses="MIT"
# a fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without /etc/passwd
RUN groupadd --system --gid 10001 gonets \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin gonets
COPY --from=build /opt/gonets /opt/gonets
ENV PATH=/opt/gonets/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    GONETS_CONFIG=/etc/gonets/gonets.toml
WORKDIR /tmp
USER 10001:10001
# worker health (--health-port) and the HTTP API
EXPOSE 8081 8080
ENTRYPOINT ["gonets"]
CMD ["--help"]
