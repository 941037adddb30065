"""deploy/kubernetes without a cluster: the manifests parsed, and every fact the Job needs
checked against the others and against poolbench's own flags and scenario loader."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from poolbench.cli import merge, run
from poolbench.scenario import parse_scenario

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text())


def flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of args from the container's env."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], text)


@pytest.fixture
def job() -> dict[str, Any]:
    return load("job.yaml")


def container(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def test_the_job_is_indexed_with_one_pod_per_node(job):
    spec = job["spec"]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert spec["completionMode"] == "Indexed"
    n = int(flags(container(job)["args"])["nodes"])
    assert spec["completions"] == spec["parallelism"] == n
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["backoffLimit"] == 0  # a pod started again could not join a started run


def test_the_completion_index_reaches_node_index(job):
    c = container(job)
    env = env_of(c)
    index = env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    args = flags(c["args"])
    assert args["node-index"] == "$(JOB_COMPLETION_INDEX)"
    run_name = env["RUN_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert run_name == "metadata.labels['job-name']" and args["join"] == "$(RUN_NAME)"
    # every $(VAR) the args use is declared in env, or Kubernetes leaves it as written
    used = {v for a in c["args"] for v in re.findall(r"\$\((\w+)\)", a)}
    assert used <= set(env)


def test_the_args_are_what_poolbench_run_accepts(job):
    c = container(job)
    env = {"RUN_NAME": "poolbench", "JOB_COMPLETION_INDEX": "3"}
    expanded = [expand(a, env) for a in c["args"]]
    assert expanded[0] == "run"
    ctx = run.make_context("run", expanded[1:])
    assert ctx.params["join"] == "poolbench" and ctx.params["node_index"] == 3
    assert ctx.params["json_path"] == "/results/poolbench/node-3.json"


def test_the_database_url_comes_from_a_secret_and_never_appears_in_a_manifest(job):
    url = env_of(container(job))["POOLBENCH_URL"]["valueFrom"]["secretKeyRef"]
    assert url == {"name": "poolbench-database", "key": "url"}
    for path in DEPLOY.iterdir():
        text = path.read_text()
        assert not re.search(r"(postgres(ql)?|mysql|mariadb)(\+\w+)?://", text), path.name
        assert "password" not in text.lower(), path.name


def test_the_scenario_comes_from_the_configmap_and_is_valid(job):
    c = container(job)
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    scenario_path = Path(c["args"][1])
    volume = volumes[mounts[str(scenario_path.parent)]]
    configmap = load("scenario-configmap.yaml")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    text = configmap["data"][scenario_path.name]
    scenario = parse_scenario(text, "scenario-configmap.yaml")
    assert scenario.thresholds  # merged figures are judged by them


def test_results_go_where_the_merge_step_reads_them(job):
    c = container(job)
    pod = job["spec"]["template"]["spec"]
    results_dir = str(Path(flags(c["args"])["json"]).parent.parent)
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == results_dir]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    pvc = load("results-pvc.yaml")
    assert pvc["metadata"]["name"] == claim
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several hosts write

    merge_job = load("merge-job.yaml")
    mc = container(merge_job)
    mpod = merge_job["spec"]["template"]["spec"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in mpod["volumes"]] == [claim]
    assert [m["mountPath"] for m in mc["volumeMounts"]] == [results_dir]
    assert env_of(mc)["RUN_NAME"]["value"] == job["metadata"]["name"]
    env = {"RUN_NAME": job["metadata"]["name"], "JOB_COMPLETION_INDEX": "2"}
    words = expand(mc["args"][0], env).split()
    assert words[:2] == ["poolbench", "merge"]
    node_json = expand(flags(c["args"])["json"], env)
    assert Path(node_json).match(words[2])  # the glob finds every node's file
    ctx = merge.make_context("merge", [node_json, *words[3:]])
    assert ctx.params["json_path"].startswith(results_dir)


def test_the_image_is_the_dockerfile_on_a_slim_python(job):
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    tag = re.search(r"docker build .* -t (\S+) \.", dockerfile)
    assert tag and container(job)["image"] == tag.group(1)
    assert container(load("merge-job.yaml"))["image"] == tag.group(1)
    assert re.search(r"^FROM python:3\.\d+-slim$", dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["poolbench"\]$', dockerfile, re.M)
    user = re.search(r"^USER (\d+)$", dockerfile, re.M)
    security = job["spec"]["template"]["spec"]["securityContext"]
    assert user and int(user.group(1)) == security["runAsUser"] and security["runAsNonRoot"]


def test_kustomization_names_files_that_exist():
    kustomization = load("kustomization.yaml")
    for name in kustomization["resources"]:
        assert (DEPLOY / name).is_file(), name
