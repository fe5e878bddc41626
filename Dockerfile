# syntax=docker/dockerfile:1
# The platform's own image: `allora-gitops serve` (the API, pages and results) with the [platform] extra.
# Build context: this checkout (.dockerignore keeps tests, benchmarks and examples out).
#   buildah bud --secret id=pipcert,src=/etc/ssl/certs/ca-certificates.crt -t allora-gitops:dev .
# or `allora-gitops build-platform-image` (builds, pushes, writes the digest back into platform/kustomization.yaml).
# Optional build secrets: pipcert (a CA bundle for PyPI behind a proxy) and pipconf (pip.conf); they never reach a layer.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- build stage: a virtualenv with the project and its [platform] extra, nothing else ---
# checkov:skip=CKV_DOCKER_7:BASE_IMAGE is an ARG; pin it by digest with --build-arg BASE_IMAGE=python@sha256:…
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY allora_gitops ./allora_gitops
COPY allora_runtime ./allora_runtime
COPY templates ./templates
COPY blueprints ./blueprints
RUN --mount=type=secret,id=pipcert --mount=type=secret,id=pipconf sh -c 'if [ -s /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi; if [ -s /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi; set -e; python -m venv /opt/allora-gitops; /opt/allora-gitops/bin/pip install --no-cache-dir --no-input "/src[platform]"; /opt/allora-gitops/bin/pip uninstall --yes --no-input pip; rm -rf /opt/allora-gitops/lib/python3*/site-packages/setuptools*'

# --- runtime stage: the virtualenv, git (publishing pushes review branches) and an init; no compilers, no pip ---
FROM ${BASE_IMAGE}
# Unpinned apt versions on purpose: the base image (pin it by digest) fixes the Debian release, and its
# security updates should reach the next build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && groupadd --gid 10001 allora \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin allora
COPY --from=build /opt/allora-gitops /opt/allora-gitops
# A read-only root filesystem works as is: everything the server writes (uploads, git clones, caches) goes under /tmp.
ENV PATH=/opt/allora-gitops/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_DATA_HOME=/tmp/.local/share \
    ALLORA_GITOPS_HOME=/tmp/allora-gitops
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
# tini is PID 1: it forwards SIGTERM to uvicorn (which drains) and reaps the git processes a publish leaves.
ENTRYPOINT ["/usr/bin/tini", "--", "allora-gitops"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
LABEL org.opencontainers.image.title="allora-gitops" \
      org.opencontainers.image.description="The allora-gitops platform API (allora-gitops serve)" \
      org.opencontainers.image.licenses="Apache-2.0"
