# The container image and the Kubernetes manifests (included by the top-level Makefile;
# run from the repository root).
#
#   make image        build deploy/Containerfile with podman as $(IMAGE)
#   make image-test   build it, run it and check it from the host (deploy/check_image.py)
#   make manifests    validate deploy/kubernetes/*.yaml strictly for Kubernetes 1.29 to
#                     1.37 (deploy/check_manifests.py); part of `make check`
#
# The image's base: IMAGE_BASE if set (e.g. docker.io/library/python:3.11-slim where a
# registry serves it), else a Debian bookworm base built from Debian's packages by
# deploy/base-image.sh and cached. podman, runc and mmdebstrap come from apt when missing.

IMAGE ?= localhost/wahook:dev
IMAGE_BASE ?=
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REVISION := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# The host's CA store, mounted for the build's RUN steps only (never into the image), so
# pip reaches PyPI through a TLS-inspecting proxy whose CA only the host trusts.
HOST_CA := /etc/ssl/certs/ca-certificates.crt
DEPLOY_PY := $(wildcard deploy/*.py)

.PHONY: image image-test manifests deploy-lint podman

image image-test podman: export CONTAINERS_CONF ?= $(abspath deploy/podman/containers.conf)

# apt-get update only when the package lists lack them (as for redis-server).
podman:
	@command -v podman >/dev/null && command -v runc >/dev/null && \
	  { [ -n "$(IMAGE_BASE)" ] || command -v mmdebstrap >/dev/null; } || { \
	  $(SUDO) apt-get install -y -q podman runc mmdebstrap >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q podman runc mmdebstrap; }; }

image: podman
	base='$(IMAGE_BASE)'; [ -n "$$base" ] || base=$$(deploy/base-image.sh); \
	podman build --format docker -f deploy/Containerfile -t $(IMAGE) \
	  --build-arg BASE="$$base" --build-arg VERSION=$(IMAGE_VERSION) \
	  --build-arg REVISION=$(IMAGE_REVISION) \
	  $$([ -f $(HOST_CA) ] && echo "--volume $(HOST_CA):$(HOST_CA):ro") .

image-test: image $(PY_GEN_STAMP)
	$(PY) deploy/check_image.py --image $(IMAGE)

manifests: $(VENV_STAMP)
	$(PY) deploy/check_manifests.py deploy/kubernetes/*.yaml

deploy-lint: $(VENV_STAMP)
	$(BIN)/ruff check $(DEPLOY_PY)
	$(BIN)/ruff format --check $(DEPLOY_PY)
	$(BIN)/mypy --strict $(DEPLOY_PY)

check: deploy-lint manifests
