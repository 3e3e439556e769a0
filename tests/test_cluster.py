"""The cluster files: ray_cluster.yaml passes Ray's own cluster-launcher validation
and boots what the sweep needs; kuberay_job.yaml fits KubeRay's RayJob schema (the
part of it this manifest uses, transcribed below) and runs the same image. And the
sweep's own Ray, without a cluster, listens on loopback only."""

from __future__ import annotations

import re
from importlib import metadata

import jsonschema
import pytest
import yaml

from tests.helpers.data import ROOT
from tests.helpers.processes import listening, with_descendants


def _launcher_config() -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((ROOT / "ray_cluster.yaml").read_text()))
    validate_config(config)  # raises on any schema violation
    return config


def test_cluster_file_passes_ray_validation_and_boots_what_we_need():
    config = _launcher_config()
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    # the head runs the driver only: no CPU or GPU for trials, replicas, tasks
    assert head["resources"] == {"CPU": 0, "GPU": 0}
    workers = [n for name, n in nodes.items() if name != config["head_node_type"]]
    assert workers and all(node["resources"].get("GPU", 0) > 0 for node in workers)
    # every node, workers included, carries the instance profile for the bucket
    for node in nodes.values():
        assert node["node_config"]["IamInstanceProfile"]["Arn"].startswith(
            "arn:aws:iam::"
        )
    # Ray's own image, pinned to this project's Ray and Python
    image = config["docker"]["image"]
    ray_version = metadata.version("ray")
    assert image == f"rayproject/ray:{ray_version}-py311-gpu"
    assert "pip install -e ~/vae-sweep" in config["setup_commands"]
    assert config["file_mounts"]["~/vae-sweep"] == "."
    # a worker that cannot see its GPU fails at setup, loudly
    checks = " ".join(config["worker_setup_commands"])
    assert "nvidia-smi" in checks and "torch.cuda.is_available()" in checks


def test_validation_catches_a_broken_file():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    raw["available_node_types"]["head.cpu"]["min_workers"] = "many"
    with pytest.raises(Exception, match="many"):
        validate_config(prepare_config(raw))


# KubeRay's RayJob (ray.io/v1) CRD, the fields this manifest uses, with their types;
# unknown fields are refused here (KubeRay would drop them silently)
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
CONTAINER = {
    "type": "object",
    "required": ["name", "image"],
    "properties": {
        "name": {"type": "string"}, "image": {"type": "string"},
        "resources": {"type": "object", "properties": {
            "limits": {"type": "object"}, "requests": {"type": "object"}},
            "additionalProperties": False},
        "ports": {"type": "array", "items": {"type": "object", "required": [
            "containerPort"]}},
        "volumeMounts": {"type": "array", "items": {"type": "object", "required": [
            "mountPath", "name"]}},
    },
    "additionalProperties": False,
}  # fmt: skip
POD = {
    "type": "object",
    "required": ["spec"],
    "properties": {"spec": {
        "type": "object",
        "required": ["containers"],
        "properties": {
            "serviceAccountName": {"type": "string"},
            "containers": {"type": "array", "minItems": 1, "items": CONTAINER},
            "volumes": {"type": "array", "items": {"type": "object"}},
            "tolerations": {"type": "array", "items": {"type": "object"}},
        },
        "additionalProperties": False,
    }},
    "additionalProperties": False,
}  # fmt: skip
RAYJOB = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["entrypoint", "rayClusterSpec"],
            "properties": {
                "entrypoint": {"type": "string"},
                "shutdownAfterJobFinishes": {"type": "boolean"},
                "ttlSecondsAfterFinished": {"type": "integer"},
                "submissionMode": {"enum": ["K8sJobMode", "HTTPMode",
                                            "InteractiveMode", "SidecarMode"]},
                "rayClusterSpec": {
                    "type": "object",
                    "required": ["headGroupSpec"],
                    "properties": {
                        "rayVersion": {"type": "string"},
                        "headGroupSpec": {
                            "type": "object",
                            "required": ["template"],
                            "properties": {"rayStartParams": STRINGS,
                                           "template": POD},
                            "additionalProperties": False,
                        },
                        "workerGroupSpecs": {"type": "array", "items": {
                            "type": "object",
                            "required": ["groupName", "template"],
                            "properties": {
                                "groupName": {"type": "string"},
                                "replicas": {"type": "integer"},
                                "minReplicas": {"type": "integer"},
                                "maxReplicas": {"type": "integer"},
                                "rayStartParams": STRINGS,
                                "template": POD,
                            },
                            "additionalProperties": False,
                        }},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
    },
}  # fmt: skip


def _rayjob() -> dict:
    return yaml.safe_load((ROOT / "kuberay_job.yaml").read_text())


def test_kuberay_job_fits_the_rayjob_schema_and_runs_the_sweep():
    job = _rayjob()
    jsonschema.validate(job, RAYJOB)
    spec = job["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == metadata.version("ray")
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert "python -m sweep.run grids/" in job["spec"]["entrypoint"]
    assert "--address auto" in job["spec"]["entrypoint"]
    assert "s3://" in job["spec"]["entrypoint"]  # storage every pod sees
    pods = [spec["headGroupSpec"]["template"]] + [
        group["template"] for group in spec["workerGroupSpecs"]
    ]
    images = {c["image"] for pod in pods for c in pod["spec"]["containers"]}
    assert len(images) == 1  # one image, built from the Dockerfile
    assert all(pod["spec"]["serviceAccountName"] == "vae-sweep" for pod in pods)
    for group in spec["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
    # the image is Ray's, as in ray_cluster.yaml
    base = re.search(r"^FROM (\S+)$", (ROOT / "Dockerfile").read_text(), re.M)[1]
    assert base == _launcher_config()["docker"]["image"]


@pytest.mark.parametrize("path, value", [
    (("spec", "rayClusterSpec", "headGroupSpec", "rayStartParams", "num-cpus"), 0),
    (("spec", "entrypoint"), ["python", "-m", "sweep.run"]),
    (("spec", "rayClusterSpec", "workerGroupSpecs", 0, "replica"), 4),
])  # fmt: skip
def test_the_rayjob_check_catches_common_mistakes(path, value):
    job = _rayjob()
    node = job
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value  # an int where KubeRay wants a string; a typo
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, RAYJOB)


@pytest.mark.ray
def test_the_sweeps_own_ray_listens_on_loopback_only():
    import ray

    from sweep.cluster import LOOPBACK, connect
    from sweep.grid_file import load_grid

    @ray.remote
    def node_address() -> str:
        return ray.util.get_node_ip_address()

    assert not ray.is_initialized()  # a Ray of this test's own, as `sweep.run` starts
    connect(load_grid(ROOT / "grids" / "smoke.yaml"), None, "vae-sweep-tests")
    try:
        assert ray.get_runtime_context().gcs_address.startswith(f"{LOOPBACK}:")
        node = ray._private.worker.global_worker.node
        assert node.address_info["node_ip_address"] == LOOPBACK
        assert ray.get(node_address.remote()) == LOOPBACK  # its workers reach it
        # GCS, raylet (node and object manager), workers: none on the network
        pids = [info.process.pid for infos in node.all_processes.values()
                for info in infos]  # fmt: skip
        addresses = listening(with_descendants(pids))
        assert addresses and all(address.is_loopback for address in addresses)
    finally:
        ray.shutdown()
