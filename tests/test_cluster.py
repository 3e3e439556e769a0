"""ray_cluster.yaml passes Ray's own cluster-launcher validation and installs us."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT


def test_cluster_file_passes_ray_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    config = prepare_config(raw)
    validate_config(config)  # raises on any schema violation
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0  # a CPU head
    assert any(node["resources"].get("GPU", 0) > 0 for node in nodes.values())
    setup = " ".join(config["setup_commands"])
    assert "pip install -e ~/vae-sweep" in setup
    assert config["file_mounts"]["~/vae-sweep"] == "."


def test_validation_catches_a_broken_file():
    import pytest
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    raw["available_node_types"]["head.cpu"]["min_workers"] = "many"
    with pytest.raises(Exception, match="many"):
        validate_config(prepare_config(raw))
