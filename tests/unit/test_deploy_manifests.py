"""deploy/check_manifests.py (`make manifests`) passes the committed Kubernetes manifests and
fails each kind of breakage, naming it: a misspelt field, a wrong type, an unknown kind, YAML
that does not parse, and a Secret key the pod needs but the Secret lacks."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
CHECK = ROOT / "deploy" / "check_manifests.py"


def check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), *sorted(str(p) for p in directory.glob("*.yaml"))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_committed_manifests_pass_for_every_supported_version() -> None:
    result = check(MANIFESTS)
    assert result.returncode == 0, result.stderr
    assert "valid for Kubernetes 1.29.0 to 1.37.0 (strict)" in result.stdout
    assert "1.27.0 refused as expected" in result.stdout


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("workload.yaml", "readinessProbe:", "readinesProbe:", "'readinesProbe' was unexpected"),
        ("workload.yaml", "replicas: 1", "replicas: one", "'one' is not of type 'integer'"),
        ("networkpolicy.yaml", "kind: NetworkPolicy", "kind: NetworkPolicie", "no schema for"),
        ("networkpolicy.yaml", "policyTypes: [Ingress]", "policyTypes: [Ingress", "not YAML"),
        ("secret.yaml", "  grpc_token:", "  grpc-token:", "needs key 'grpc_token'"),
    ],
    ids=["misspelt-field", "wrong-type", "unknown-kind", "bad-yaml", "missing-secret-key"],
)
def test_a_broken_manifest_fails(
    tmp_path: Path, file: str, old: str, new: str, message: str
) -> None:
    for path in MANIFESTS.glob("*.yaml"):
        shutil.copy(path, tmp_path)
    text = (tmp_path / file).read_text()
    assert old in text  # the breakage applies to the committed file
    (tmp_path / file).write_text(text.replace(old, new, 1))
    result = check(tmp_path)
    assert result.returncode == 1
    assert message in result.stdout + result.stderr
