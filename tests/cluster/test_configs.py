"""The cluster configs of cluster/: valid YAML, valid for Ray's launcher, genzoo commands that
genzoo's own parser accepts, and placeholders instead of real accounts."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any, Iterator, List

import pytest
import yaml

from sweep import config as sweep_config
from sweep.cli import build_parser

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
YAML_FILES = sorted(CLUSTER.rglob("*.yaml"))
TEXT_FILES = sorted(p for p in CLUSTER.rglob("*") if p.is_file())
EXPECTED = {"aws-gpu.yaml", "gcp-gpu.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob-demogen.yaml"}
SHELL_SEPARATORS = re.compile(r"&&|\|\||;|\||\n")


def _documents(path: Path) -> List[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _readme_code() -> Iterator[str]:
    """Shell lines of the README's fenced code blocks, continuation lines joined."""
    text = (CLUSTER / "README.md").read_text()
    for block in re.findall(r"```(?:sh|bash)?\n(.*?)```", text, re.S):
        yield block.replace("\\\n", " ")


def genzoo_commands(text: str) -> List[List[str]]:
    """The argument lists of every `genzoo ...` command in a shell snippet (after `--`, in
    `a && b` chains, ...), comments dropped."""
    commands = []
    for segment in SHELL_SEPARATORS.split(text):
        try:
            tokens = shlex.split(segment, comments=True)
        except ValueError:  # an unbalanced quote across a split point: not a command of ours
            continue
        for i, token in enumerate(tokens):
            # A command word: first in its segment (after VAR=value assignments) or after `--`,
            # with arguments; elsewhere `genzoo` is a name (`kubectl get raycluster genzoo`,
            # `metadata: {name: genzoo}`).
            command_word = i > 0 and tokens[i - 1] == "--" or all("=" in t for t in tokens[:i])
            if token == "genzoo" and command_word and i + 1 < len(tokens):
                commands.append(tokens[i + 1:])
                break
    return commands


def _all_commands() -> List[List[str]]:
    texts = [s for path in YAML_FILES for doc in _documents(path) for s in _strings(doc)]
    return [c for text in texts + list(_readme_code()) for c in genzoo_commands(text)]


def test_the_expected_files_exist_and_every_yaml_file_parses_to_mappings():
    assert EXPECTED <= {str(p.relative_to(CLUSTER)) for p in YAML_FILES}
    for path in YAML_FILES:
        documents = _documents(path)
        assert documents and all(isinstance(d, dict) for d in documents), path


def test_the_command_splitter_finds_commands_after_double_dash_and_in_chains():
    text = "ray job submit --working-dir . -- genzoo sweep run demo --address auto && genzoo analyze demo # x"
    assert genzoo_commands(text) == [["sweep", "run", "demo", "--address", "auto"], ["analyze", "demo"]]
    assert genzoo_commands("pip install -e /home/ray/genzoo") == []
    assert genzoo_commands("kubectl get raycluster genzoo") == []
    assert genzoo_commands("GENZOO_DATA=/d genzoo train") == [["train"]]


def test_every_genzoo_command_parses_with_the_cli_and_names_an_existing_sweep():
    commands = _all_commands()
    # The launcher configs, the RayJob and the README between them use all of these.
    used = {tuple(c[:2]) if c[0] in ("sweep", "data") else (c[0],) for c in commands}
    assert {("sweep", "run"), ("sweep", "resume"), ("sweep", "status"), ("measure",), ("analyze",),
            ("data", "download")} <= used
    parser = build_parser()
    for command in commands:
        try:
            args = parser.parse_args(command)
        except SystemExit:
            pytest.fail(f"genzoo rejects: genzoo {' '.join(command)}")
        if args.command == "sweep" and args.sweep_command == "run":
            assert args.sweep in sweep_config.presets(), command
        if getattr(args, "storage", None) and "://" in args.storage:
            assert args.storage == "s3://YOUR-BUCKET/genzoo" or args.storage == "gs://YOUR-BUCKET/genzoo", command


def test_the_rayjob_runs_sweep_then_measure_then_analyze_on_the_raycluster_of_this_folder():
    (cluster,) = _documents(CLUSTER / "kuberay" / "raycluster.yaml")
    (job,) = _documents(CLUSTER / "kuberay" / "rayjob-demogen.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    steps = [c[:1] if c[0] != "sweep" else c[:2] for c in genzoo_commands(job["spec"]["entrypoint"])]
    assert steps == [["sweep", "run"], ["measure"], ["analyze"]]
    assert " && " in job["spec"]["entrypoint"]  # a failed sweep stops the chain
    workers = cluster["spec"]["workerGroupSpecs"]
    assert all(g["minReplicas"] >= 1 for g in workers)  # the driver wants a GPU at start
    for group in [cluster["spec"]["headGroupSpec"], *workers]:
        for container in group["template"]["spec"]["containers"]:
            assert container["image"].startswith("YOUR-REGISTRY/genzoo:")


def test_launcher_configs_are_valid_for_rays_cluster_config_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    launchers = [p for p in YAML_FILES if "provider" in _documents(p)[0]]
    assert {p.name for p in launchers} == {"aws-gpu.yaml", "gcp-gpu.yaml"}
    for path in launchers:
        config = _documents(path)[0]
        jsonschema.validate(config, schema)
        assert config["head_node_type"] in config["available_node_types"]
        gpu_types = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
        assert gpu_types and min(t["min_workers"] for t in gpu_types) >= 0
        assert any(t["min_workers"] >= 1 for t in gpu_types), path  # one GPU worker from the start
        assert any("pip install" in c and "/home/ray/genzoo" in c for c in config["setup_commands"])
        assert list(config["file_mounts"].values()) == ["."]


def test_ray_versions_agree_across_images_pins_and_manifests():
    text = "\n".join(p.read_text() for p in TEXT_FILES)
    versions = set(re.findall(r"rayproject/ray:(\d+\.\d+\.\d+)", text))
    versions |= set(re.findall(r"ray\[[\w,]+\]==(\d+\.\d+\.\d+)", text))
    versions |= set(re.findall(r'rayVersion:\s*"(\d+\.\d+\.\d+)"', text))
    assert len(versions) == 1, versions


def test_accounts_buckets_and_images_are_placeholders():
    for path in TEXT_FILES:
        text = path.read_text()
        where = path.relative_to(CLUSTER)
        for bucket in re.findall(r"\b(?:s3|gs)://([\w.-]+)", text):
            assert bucket == "YOUR-BUCKET", (where, bucket)
        assert not re.search(r"\b\d{12}\b", text), where  # an AWS account number
        assert not re.search(r"\bami-[0-9a-f]{8,17}\b", text), where  # a real AMI id
        assert not re.search(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", text), where  # an AWS access key id
        for account in re.findall(r"arn:aws:iam::([^:\s]*):", text):
            assert account.startswith("YOUR-"), (where, account)
        for email in re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text):
            assert "YOUR-" in email, (where, email)
    for path in YAML_FILES:
        for document in _documents(path):
            for text in _strings(document):
                for image in re.findall(r"^[\w.-]+(?:/[\w.-]+)+:[\w.-]+$", text):
                    assert image.startswith(("rayproject/ray:", "YOUR-REGISTRY/")), (path, image)
    gcp = _documents(CLUSTER / "gcp-gpu.yaml")[0]
    assert gcp["provider"]["project_id"] == "YOUR-GCP-PROJECT"
