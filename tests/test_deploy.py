"""The Kubernetes manifests and Dockerfiles, checked for what makes a deployment work: the shard
count matches the replicas, probes hit the daemon's real endpoints and port, every flag exists in
`streetscan run`, the ConfigMap's streams.yaml passes the same model the daemon loads, secrets
referenced exist, the pod runs as the image's non-root user on a read-only root. No cluster or
Docker daemon runs here: when kubectl is installed the kustomizations are also rendered."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml

from streetscan.cli import app
from streetscan.pipeline.config import load_config

REPO = Path(__file__).resolve().parents[1]
BASE, GPU, DOCKER = REPO / "deploy" / "k8s" / "base", REPO / "deploy" / "k8s" / "gpu", REPO / "deploy" / "docker"


def docs(folder: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and "kind" in doc and doc["kind"] != "Kustomization":
                out[f"{doc['kind']}/{doc['metadata']['name']}" + ("#example" if "example" in path.name else "")] = doc
    return out


def run_flags() -> set[str]:
    command = typer.main.get_command(app).commands["run"]
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def test_base_manifests_hold_together(tmp_path):
    d = docs(BASE)
    sts = d["StatefulSet/streetscan"]
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    args = dict(a.split("=", 1) if "=" in a else (a, "") for a in c["args"][1:])
    assert c["args"][0] == "run" and set(flags(c["args"])) <= run_flags()
    # Sharding: pod k of N takes shard k/N; N must be the replica count.
    assert int(env["STREETSCAN_SHARD_COUNT"]["value"]) == sts["spec"]["replicas"]
    svc = d[f"Service/{sts['spec']['serviceName']}"]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    # Probes and scraping on the daemon's metrics port and real endpoints.
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
    assert int(args["--metrics-port"]) == port and args["--metrics-host"] == "0.0.0.0"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert svc["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    # Drain before the kill.
    assert pod["terminationGracePeriodSeconds"] > float(args["--shutdown-timeout"])
    # Non-root on a read-only root, as the image's user.
    uid = int(re.search(r"^USER (\d+)", (DOCKER / "Dockerfile").read_text(), re.M).group(1))
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == uid
    assert c["securityContext"]["readOnlyRootFilesystem"] and not c["securityContext"]["allowPrivilegeEscalation"]
    # Every mount has a volume; what the daemon writes is on the volume, /tmp is writable.
    volumes = {v["name"]: v for v in pod["volumes"]} | {
        v["metadata"]["name"]: v for v in sts["spec"]["volumeClaimTemplates"]
    }
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert set(mounts.values()) <= set(volumes) and "/tmp" in mounts
    assert any(
        args["--out"].startswith(p)
        for p, name in mounts.items()
        if name in {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    )
    # streams.yaml: from the ConfigMap, and valid for the daemon.
    streams = Path(args["--streams"])
    cm_name = volumes[mounts[str(streams.parent)]]["configMap"]["name"]
    text = d[f"ConfigMap/{cm_name}"]["data"][streams.name]
    (tmp_path / "streams.yaml").write_text(text, encoding="utf-8")
    assert load_config(tmp_path / "streams.yaml").cameras
    # Secrets referenced exist in the example (with those keys); none are inlined.
    secret = d["Secret/streetscan-credentials#example"]
    for e in c["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert "REDIS_URL" in args["--redis"] and "redis://" not in yaml.safe_dump(sts)
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert all((BASE / r).is_file() for r in kust["resources"]) and "secret.example.yaml" not in kust["resources"]


def test_gpu_variant_asks_for_a_gpu_and_runs_inference_on_it():
    patch = yaml.safe_load((GPU / "statefulset-gpu.yaml").read_text())
    (c,) = patch["spec"]["template"]["spec"]["containers"]
    base_args = docs(BASE)["StatefulSet/streetscan"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and c["image"].endswith("-gpu")
    assert set(base_args) < set(c["args"]) and set(flags(c["args"])) <= run_flags()
    assert "--device=cuda" in c["args"] or "--device=tensorrt" in c["args"]
    assert "onnxruntime-gpu" in (DOCKER / "Dockerfile.gpu").read_text()


def test_dockerfiles_run_streetscan_as_a_non_root_user_with_the_models():
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (DOCKER / name).read_text()
        assert re.search(r"^USER 10001", text, re.M), name
        assert "COPY models ./models" in text and not re.search(r"^ADD\s+https?://", text, re.M)
        entry = re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1)
        cmd = yaml.safe_load(re.search(r"^CMD (.+)$", text, re.M).group(1))
        assert "streetscan" in entry and cmd[0] == "run" and set(flags(cmd)) <= run_flags()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: kustomize rendering not checked")
def test_kustomizations_render():
    for folder in (BASE, GPU):
        out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        rendered = {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(out.stdout) if d}
        assert set(rendered) == {"ConfigMap/streetscan-streams", "Service/streetscan", "StatefulSet/streetscan"}
        c = rendered["StatefulSet/streetscan"]["spec"]["template"]["spec"]["containers"][0]
        assert ("nvidia.com/gpu" in c["resources"]["limits"]) == (folder == GPU)
        assert c["volumeMounts"] and c["livenessProbe"]  # the patch kept what it does not change


def test_the_readme_names_every_setting_the_product_reads_from_the_environment():
    # Issue #35 item 4: the README never named STREETSCAN_USER_PASSWORD, STREETSCAN_CONSOLE_PORT or
    # STREETSCAN_DEMO_CONSOLE, which the demo and the CLI read.
    repo = Path(__file__).resolve().parents[1]
    sources = [*sorted((repo / "streetscan").rglob("*.py")), *sorted((repo / "scripts").glob("*.sh"))]
    read = {m for f in sources for m in re.findall(r"STREETSCAN_[A-Z_]+[A-Z]", f.read_text(encoding="utf-8"))}
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert read >= {"STREETSCAN_USER_PASSWORD", "STREETSCAN_CONSOLE_PORT", "STREETSCAN_DEMO_CONSOLE"}
    assert sorted(v for v in read if v not in readme) == []
    assert "--password" in readme


def test_one_version_from_one_place():
    # Issue #35 item 5: events said pipeline_version 0.1.0 (pyproject 0.1.0), the README tied the
    # event schema to StreetScan 0.2 and the Docker tag was 0.2.
    from importlib.metadata import version

    import streetscan

    repo = Path(__file__).resolve().parents[1]
    assert 'dynamic = ["version"]' in (repo / "pyproject.toml").read_text(encoding="utf-8")
    assert version("streetscan") == streetscan.__version__  # the installed package reads the same place
    major_minor = ".".join(streetscan.__version__.split(".")[:2])
    tags = set()
    for path in [*repo.glob("deploy/**/*.yaml"), *repo.glob("deploy/docker/Dockerfile*"), repo / "README.md"]:
        tags |= set(re.findall(r"streetscan:(\d+\.\d+)", path.read_text(encoding="utf-8")))
    assert tags == {major_minor}
    out = subprocess.run([sys.executable, "-m", "streetscan", "version"], capture_output=True, text=True, timeout=60)
    assert streetscan.__version__ in out.stdout
