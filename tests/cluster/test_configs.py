"""The cluster configs of cluster/: valid YAML, valid for Ray's launcher, genzoo commands that
genzoo's own parser accepts, and placeholders instead of real accounts."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any, Iterator, List

import pytest
import yaml

from sweep import config as sweep_config
from sweep.cli import build_parser

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
PYPROJECT = CLUSTER.parent / "pyproject.toml"
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


def _ray_range():
    """The Ray requirement's version range in pyproject.toml."""
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (ray,) = [r for r in map(Requirement, dependencies) if r.name == "ray"]
    assert ray.specifier, "pyproject.toml: the ray requirement has no version range"
    return ray.specifier


def test_ray_versions_agree_across_pyproject_images_pins_and_manifests():
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    import ray

    allowed = _ray_range()
    text = "\n".join(p.read_text() for p in TEXT_FILES)
    # Every pip requirement of Ray in cluster/ (configs, Dockerfile, README) is pyproject's range.
    pins = re.findall(r"ray\[[\w,]+\]([<>=!~][\d.<>=!~,*]*[\d*])", text)
    assert pins and {str(SpecifierSet(p)) for p in pins} == {str(allowed)}, (pins, str(allowed))
    # The images and the KubeRay manifests name one Ray version, inside that range.
    versions = set(re.findall(r"rayproject/ray:(\d+\.\d+\.\d+)", text))
    versions |= set(re.findall(r'rayVersion:\s*"(\d+\.\d+\.\d+)"', text))
    assert len(versions) == 1, versions
    assert Version(versions.pop()) in allowed
    # And so is the Ray these tests run with.
    assert Version(ray.__version__) in allowed, (ray.__version__, str(allowed))


def test_every_sweep_run_command_loads_its_sweep_with_its_overrides():
    parser = build_parser()
    runs = [parser.parse_args(c) for c in _all_commands() if c[:2] == ["sweep", "run"]]
    assert runs
    for args in runs:
        config = sweep_config.load(args.sweep, args.overrides)
        if args.gpus_per_trial is not None:
            sweep_config.with_gpus(config, args.gpus_per_trial)


def _section(title: str) -> str:
    """The text of the README section whose heading starts with ``title``."""
    text = (CLUSTER / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}.*?$(.*?)(?=^## )", text, re.S | re.M)
    assert match, title
    return match[1]


def test_the_8_gpu_table_says_what_each_command_reserves():
    """Section (d)'s table: per-trial CPUs and GPU and the memory cap as the sweep file (and its
    overrides) set them, and how many trials fit at once on 8 GPUs."""
    rows = [r for r in _section("(d)").splitlines() if r.startswith("| `genzoo sweep run")]
    assert len(rows) >= 3
    parser = build_parser()
    for row in rows:
        command, cpus, gpus, cap, at_once, cpus_taken = [c.strip() for c in row.strip("|").split("|")]
        args = parser.parse_args(shlex.split(command.strip("`"))[1:])
        config = sweep_config.load(args.sweep, args.overrides)
        if args.gpus_per_trial is not None:
            config = sweep_config.with_gpus(config, args.gpus_per_trial)
        res = config.resources
        assert (float(cpus), float(gpus)) == (res.cpus, res.gpus), row
        # genzoo caps a trial's GPU memory at its fraction when that is below one GPU.
        assert cap.startswith("none") if res.gpus >= 1 else cap.startswith(f"{res.gpus * 100:g}% of its GPU"), row
        slots = int(8 // res.gpus)
        assert int(at_once.split()[0]) == slots and float(cpus_taken) == slots * res.cpus, row
        if res.pack > 1:
            count = len(sweep_config.packs(config.trials(), res.pack))
            assert f"of {count} packs of up to {res.pack} models: {slots * res.pack} models at once" in at_once, row


SBATCH = CLUSTER / "slurm" / "genzoo.sbatch"


def test_the_sbatch_script_is_valid_bash_and_its_settings_are_documented():
    result = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    script = SBATCH.read_text()
    header = script.split("#SBATCH", 1)[0]
    in_header = set(re.findall(r"^#\s+((?:GENZOO|RAY)_[A-Z_]+)", header, re.M))
    in_header |= set(re.findall(r"(?:^#\s+|,\s*)((?:GENZOO|RAY)_[A-Z_]+)(?=[, ])", header, re.M))
    readme = _section("(e)")
    documented = set(re.findall(r"`((?:GENZOO|RAY)_[A-Z_]+)`", "\n".join(
        line for line in readme.splitlines() if line.startswith("| `"))))
    assert in_header and documented
    assert in_header == documented, (in_header ^ documented)
    for name in documented - {"RAY_AUTH_TOKEN"}:
        assert re.search(rf"\$\{{?{name}\b", script), f"{name} is documented but the script never reads it"
    # The resources are #SBATCH lines (sbatch's options override them), one task per node.
    assert re.search(r"^#SBATCH --ntasks-per-node=1$", script, re.M)
    assert re.search(r"^#SBATCH --requeue$", script, re.M)
    assert re.search(r"^##SBATCH --gpus-per-node=\d+$", script, re.M)


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
