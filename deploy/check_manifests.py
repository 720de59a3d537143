"""`make manifests` (part of `make check`): validate deploy/kubernetes/ offline and strictly.

Every resource in every file is checked against the Kubernetes OpenAPI schemas that
kubernetes-validate ships, in strict mode (an unknown or misspelt field fails), for each
supported Kubernetes version: 1.29 (native sidecars on by default) up to the newest the
pinned kubernetes-validate knows. A kind without a schema fails too (the library only
warns). Two checks a schema cannot make:

- the files refer only to Secret keys that secret.yaml defines (a ``*_FILE`` path under a
  mounted Secret, a ``secretKeyRef``), so a renamed key fails here and not at pod start;
- the same manifests fail on 1.27, whose schema has no ``initContainers[].restartPolicy``:
  proof that strict validation is on (and why older clusters are not supported).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Neither ships type information; what is used of them is small and checked by running.
import kubernetes_validate  # type: ignore[import-untyped]
import yaml  # type: ignore[import-untyped]
from kubernetes_validate import utils as kv

OLDEST = (1, 29)  # native sidecar containers are on by default from 1.29
UNSUPPORTED = "1.27.0"  # no native sidecars in its schema


def versions() -> list[str]:
    """Every version from OLDEST on that kubernetes-validate ships schemas for."""
    found = set()
    for v in kv.all_versions():
        major, minor = (int(p) for p in v.removeprefix("v").split(".")[:2])
        if (major, minor) >= OLDEST:
            found.add((major, minor))
    return [f"{major}.{minor}.0" for major, minor in sorted(found)]


def load(paths: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    resources = []
    for path in paths:
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            raise SystemExit(f"{path}: not YAML: {exc}") from None
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise SystemExit(f"{path}: a document that is not a Kubernetes resource")
            resources.append((path, doc))
    return resources


def name(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"


def schema_errors(resources: list[tuple[Path, dict[str, Any]]], version: str) -> list[str]:
    errors = []
    for path, doc in resources:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kv.SchemaNotFoundError:
            errors.append(f"{path}: {name(doc)}: no schema for {doc.get('apiVersion')}")
        except kv.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{path}: {name(doc)}: {where}: {exc.message}")
    return errors


def pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "Pod":
        yield spec
    elif "template" in spec:  # Deployment, StatefulSet, DaemonSet, Job
        yield spec["template"].get("spec", {})


def secret_ref_errors(resources: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    keys = {
        doc["metadata"]["name"]: set(doc.get("stringData", {})) | set(doc.get("data", {}))
        for _, doc in resources
        if doc["kind"] == "Secret"
    }
    errors = []
    for path, doc in resources:
        for pod in pod_specs(doc):
            secret_of = {
                v["name"]: v["secret"]["secretName"]
                for v in pod.get("volumes", [])
                if "secret" in v
            }
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                mounts = {
                    m["mountPath"].rstrip("/"): secret_of[m["name"]]
                    for m in c.get("volumeMounts", [])
                    if m["name"] in secret_of
                }
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        wanted = [(ref["name"], ref["key"])]
                    else:
                        value = str(env.get("value", ""))
                        parent, _, key = value.rpartition("/")
                        wanted = [(mounts[parent], key)] if parent in mounts else []
                    for secret, key in wanted:
                        if key not in keys.get(secret, set()):
                            errors.append(
                                f"{path}: {name(doc)}: container {c['name']}: {env['name']} "
                                f"needs key {key!r} of Secret {secret!r}, which no file here "
                                "defines"
                            )
    return errors


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("files", nargs="+", type=Path)
    args = p.parse_args()
    resources = load(args.files)
    supported = versions()
    failed = 0
    for version in supported:
        for err in schema_errors(resources, version):
            print(f"manifests: Kubernetes {version}: {err}", file=sys.stderr)
            failed += 1
    for err in secret_ref_errors(resources):
        print(f"manifests: {err}", file=sys.stderr)
        failed += 1
    old = schema_errors(resources, UNSUPPORTED)
    if not any("restartPolicy" in err for err in old):
        print(
            f"manifests: expected Kubernetes {UNSUPPORTED} to refuse the native sidecar "
            "(initContainers[].restartPolicy); is strict validation off?",
            file=sys.stderr,
        )
        failed += 1
    span = f"{supported[0]} to {supported[-1]}"
    if failed:
        print(f"manifests: {failed} problems ({len(resources)} resources, Kubernetes {span})")
        return 1
    print(
        f"manifests: {len(resources)} resources in {len(args.files)} files valid for "
        f"Kubernetes {span} (strict), Secret keys consistent; {UNSUPPORTED} refused as expected"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
