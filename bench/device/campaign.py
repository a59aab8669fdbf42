"""One lent GPU window, many trainings (bench/device/campaign.sh runs this once setup.sh has run).

Trains a plan's runs at once on the one device until LIMIT less the scoring reserve, scores each finished run
on the whole val split as soon as it finishes, picks the best run of each bundle name by a val figure, and
scores only the picked ones on the test split (unless the plan's score_test is false), so that no choice is
made on test. Writes OUT/campaign.json
(every run's figures) and a list of the paths that go back to the session, the picked bundles first, then
the checkpoints of runs the limit cut (they resume when their folder is carried into the next window), within
what the device tool brings back. bench/device/README.md describes the plan.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the device's python is 3.12
    import tomli as tomllib

# Names become file names in $OUT, which the device tool brings back only when made of these.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# Every figure of `anomascope eval` that is better when higher, and so can choose a run.
FIGURES = ("pixel_ap", "pixel_auroc", "max_dice", "dice", "iou", "image_auroc", "image_ap", "froc_10fp")
# The device tool brings back 8 files of at most 16 MiB, 64 MiB in all: with campaign.json, the sums and
# setup.sh's gpu.txt, five 15 MiB parts of one tar, kept under 62 MiB to leave room for those three.
HAND_BACK_BYTES = 62 * 2**20
PLAN_KEYS = {"data", "pick_by", "bootstrap", "score_test", "anomalous_only", "run"}
RUN_KEYS = {"bundle", "method", "config", "seed", "steps", "seconds", "data", "extra"}
POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 30
CLI = (sys.executable, "-m", "anomascope.app.cli")
# Loads a method's training plan and read-out, which import its networks: what a run would import first.
LOAD_METHOD = """
import sys
from anomascope.engine.methods.registry import registry

method = registry().get(sys.argv[1])
method.training_plan()
method.predictor_class()
"""


class PlanError(ValueError):
    """A plan this script cannot run, said in one sentence naming the file."""


@dataclass(frozen=True)
class Run:
    bundle: str
    method: str
    data: str
    seed: int = 0
    config: str | None = None
    steps: int | None = None
    seconds: float | None = None  # the training's own budget (train --seconds); LIMIT bounds the window
    extra: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.bundle}-seed{self.seed}"

    @property
    def layered_configs(self) -> list[str]:
        """The configs `extra` layers over `config` (its `--config` options), in order."""
        return [value for flag, value in pairwise(self.extra) if flag == "--config"]


@dataclass(frozen=True)
class Plan:
    runs: tuple[Run, ...]
    pick_by: str = "pixel_ap"
    bootstrap: int = 1000
    # False when the split's test/ stays behind (the travelling tree's 64 MiB may not hold it): the picked
    # runs are then scored on test after the window, where the split is.
    score_test: bool = True
    # True scores only the lesion cases (eval --anomalous-only), as #35 ranks LGG seeds (tumour-slice AP).
    anomalous_only: bool = False


def read_plan(path: Path) -> Plan:
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PlanError(f"{path}: cannot read it as TOML ({exc})") from exc
    _known_keys(path, "the plan", table, PLAN_KEYS)
    runs = table.get("run")
    if not isinstance(runs, list) or not runs:
        raise PlanError(
            f"{path}: no [[run]] tables; each names bundle, method and, optionally, config, seed, steps, seconds"
        )
    plan = Plan(
        tuple(_run(path, k, entry, table.get("data")) for k, entry in enumerate(runs, 1)),
        pick_by=_typed(path, "pick_by", table.get("pick_by", "pixel_ap"), str),
        bootstrap=_typed(path, "bootstrap", table.get("bootstrap", 1000), int),
        score_test=_typed(path, "score_test", table.get("score_test", True), bool),
        anomalous_only=_typed(path, "anomalous_only", table.get("anomalous_only", False), bool),
    )
    if plan.pick_by not in FIGURES:
        raise PlanError(f"{path}: pick_by {plan.pick_by!r} is not one of {', '.join(FIGURES)}")
    names = [run.name for run in plan.runs]
    for name in names:
        if names.count(name) > 1:
            raise PlanError(f"{path}: two runs of bundle and seed {name}; give each seed of a bundle once")
    check_splits_travelled(path, plan)
    return plan


def check_splits_travelled(path: Path, plan: Plan) -> None:
    """Every split a run is scored on is there before anything trains, not found missing after the window's
    training time is spent."""
    for k, run in enumerate(plan.runs, 1):
        if not (Path(run.data) / "val").is_dir():
            raise PlanError(f"{path}: run {k}'s data {run.data} has no val/ folder; every run is scored on val")
        if plan.score_test and not (Path(run.data) / "test").is_dir():
            raise PlanError(
                f"{path}: run {k}'s data {run.data} has no test/ folder; carry it, or set score_test = false "
                "and score the picked runs on test after the window"
            )


def check_methods_load(path: Path, plan: Plan) -> None:
    """Every method of the plan loads with the packages this machine has, before anything trains: a kit of
    `wheels.sh --ppii` lacks diffusers, which the denoiser methods need, and a run would otherwise fail only
    once the window's time is running."""
    for method in dict.fromkeys(run.method for run in plan.runs):
        done = subprocess.run([sys.executable, "-c", LOAD_METHOD, method], capture_output=True, text=True)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["it exited with no message"])[-1]
            raise PlanError(
                f"{path}: method {method} does not load on this machine ({why}); bring its packages "
                "(bench/device/wheels.sh without --ppii brings every method's)"
            )


def _run(path: Path, k: int, entry, data: str | None) -> Run:
    where = f"run {k}"
    if not isinstance(entry, dict):
        raise PlanError(f"{path}: {where} is not a table")
    _known_keys(path, where, entry, RUN_KEYS)
    for key in ("bundle", "method"):
        if key not in entry:
            raise PlanError(f"{path}: {where} has no {key}")
    if entry.get("data", data) is None:
        raise PlanError(f"{path}: {where} has no data; set it at the top of the plan or in the run")
    run = Run(
        bundle=_typed(path, f"{where}'s bundle", entry["bundle"], str),
        method=_typed(path, f"{where}'s method", entry["method"], str),
        data=_typed(path, f"{where}'s data", entry.get("data", data), str),
        seed=_typed(path, f"{where}'s seed", entry.get("seed", 0), int),
        config=_typed(path, f"{where}'s config", entry.get("config"), str, optional=True),
        steps=_typed(path, f"{where}'s steps", entry.get("steps"), int, optional=True),
        seconds=_number(path, f"{where}'s seconds", entry.get("seconds")),
        extra=tuple(_typed(path, f"{where}'s extra", entry.get("extra", []), list)),
    )
    if not SAFE_NAME.match(run.bundle):
        raise PlanError(f"{path}: {where}'s bundle {run.bundle!r} must be letters, digits, '.', '_' and '-'")
    extra = (("extra's --config", file) for file in run.layered_configs)
    for label, file in (("config", run.config), ("data", run.data), *extra):
        if file is not None and not Path(file).exists():
            raise PlanError(f"{path}: {where}'s {label} {file} does not exist")
    if run.steps is not None and run.steps < 1:
        raise PlanError(f"{path}: {where}'s steps must be at least 1")
    if run.seconds is not None and run.seconds <= 0:
        raise PlanError(f"{path}: {where}'s seconds must be more than 0")
    return run


def _known_keys(path: Path, where: str, table: dict, known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise PlanError(f"{path}: {where} has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


KINDS = {str: "a string", int: "an integer", bool: "true or false", list: "a list of strings"}


def _number(path: Path, what: str, value) -> float | None:
    """TOML's integers and floats alike (a budget of 300 seconds is written 300)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlanError(f"{path}: {what} is {value!r}, not a number")
    return float(value)


def _typed(path: Path, what: str, value, kind: type, optional: bool = False):
    if value is None and optional:
        return None
    strings = not isinstance(value, list) or all(isinstance(item, str) for item in value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool) or not strings:
        raise PlanError(f"{path}: {what} is {value!r}, not {KINDS[kind]}")
    return value


@dataclass
class Job:
    """One `anomascope` command of a run, stopped if still running at its deadline."""

    run: Run
    step: str  # train, val or test
    process: subprocess.Popen
    log: Path
    deadline: float
    began: float = field(default_factory=time.monotonic)
    cut: bool = False


def start(run: Run, step: str, arguments: list[str], folder: Path, deadline: float) -> Job:
    log = folder.parent / f"{run.name}.{step}.log"  # beside the bundle, so it never travels with it
    with open(log, "w") as output:
        process = subprocess.Popen([*CLI, *arguments], stdout=output, stderr=subprocess.STDOUT)
    return Job(run, step, process, log, deadline)


def train_arguments(run: Run, folder: Path, device: str) -> list[str]:
    arguments = ["train", "--method", run.method, "--data", run.data, "--out", str(folder), "--seed", str(run.seed)]
    arguments += ["--device", device, "--quiet"]
    arguments += ["--config", run.config] if run.config else []
    arguments += ["--steps", str(run.steps)] if run.steps else []
    arguments += ["--seconds", str(run.seconds)] if run.seconds else []
    return arguments + list(run.extra)


def eval_arguments(run: Run, folder: Path, split: str, device: str, plan: Plan) -> list[str]:
    return [
        "eval", "--bundle", str(folder), "--data", run.data, "--split", split, "--out", str(folder / split),
        "--device", device, "--bootstrap", str(plan.bootstrap), "--no-report",
    ] + (["--anomalous-only"] if plan.anomalous_only else [])  # fmt: skip


def drive(jobs: list[Job], follow: Callable[[Job], Job | None]) -> None:
    """Wait for every job to end or be stopped at its deadline; `follow` hears of each, and may start another."""
    while jobs:
        for job in list(jobs):
            if job.process.poll() is None:
                if time.monotonic() < job.deadline:
                    continue
                stop(job.process)
                job.cut = True
            jobs.remove(job)
            after = follow(job)
            if after is not None:
                jobs.append(after)
        time.sleep(POLL_SECONDS)


def stop(process: subprocess.Popen) -> None:
    """As `timeout` stops a command: asked first, killed if it has not ended after a grace period. A training
    loses at most the steps since its last checkpoint, which is written atomically."""
    process.terminate()
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(log: Path, lines: int = 5) -> str:
    return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])


class Campaign:
    """The runs' records, filled in as their jobs end."""

    def __init__(self, plan: Plan, runs_dir: Path, device: str, limit: float, score_seconds: float):
        self.plan, self.runs_dir, self.device = plan, runs_dir, device
        began = time.monotonic()
        self.train_until = began + max(limit - score_seconds, 0)
        self.score_until = began + limit
        self.records = {run.name: {"name": run.name, **asdict(run)} for run in plan.runs}

    def folder(self, run: Run) -> Path:
        return self.runs_dir / run.name

    def train_all(self) -> None:
        """Trains every run without a bundle (a checkpoint resumes), scoring each on val once it has one."""
        jobs = []
        for run in self.plan.runs:
            if (self.folder(run) / "manifest.json").exists():
                self.records[run.name]["status"] = "carried"  # trained in an earlier window
                jobs.append(self.score(run, "val"))
            else:
                jobs.append(self.train(run))
        drive(jobs, self.after)
        for run in self.plan.runs:
            if self.records[run.name]["status"] in ("trained", "carried"):
                self.note_bundle(run)

    def train(self, run: Run) -> Job:
        arguments = train_arguments(run, self.folder(run), self.device)
        return start(run, "train", arguments, self.folder(run), self.train_until)

    def score(self, run: Run, split: str) -> Job:
        arguments = eval_arguments(run, self.folder(run), split, self.device, self.plan)
        return start(run, split, arguments, self.folder(run), self.score_until)

    def after(self, job: Job) -> Job | None:
        record = self.records[job.run.name]
        seconds = round(time.monotonic() - job.began, 1)
        if job.step == "train":
            record["train_seconds"] = seconds
            return self.after_training(job, record)
        if job.cut or job.process.returncode != 0:
            record[job.step] = None
            record[f"{job.step}_error"] = "stopped at the limit" if job.cut else log_tail(job.log)
            return None
        results = json.loads((self.folder(job.run) / job.step / "metrics.json").read_text())["results"]
        record[job.step] = {name.partition(":")[2]: metrics for name, metrics in results.items()}
        record[f"{job.step}_seconds"] = seconds
        return None

    def after_training(self, job: Job, record: dict) -> Job | None:
        folder = self.folder(job.run)
        if job.cut:
            record["status"] = "cut"
            record["checkpoint"] = (folder / "checkpoint" / "checkpoint.pt").exists()
            return None
        if job.process.returncode != 0 or not (folder / "manifest.json").exists():
            record["status"] = "failed"
            record["train_error"] = log_tail(job.log)
            return None
        record["status"] = "trained"
        return self.score(job.run, "val")

    def note_bundle(self, run: Run) -> None:
        """The bundle's id and its training record (steps, seconds, device): what a shipped bundle cites."""
        manifest = json.loads((self.folder(run) / "manifest.json").read_text())
        self.records[run.name].update(bundle_id=manifest["id"], training=manifest["training"])

    def pick(self) -> dict[str, str]:
        """Each bundle name's run with the highest val figure (over its read-outs); the plan's first on a tie."""
        picked: dict[str, tuple[float, str]] = {}
        for run in self.plan.runs:
            record = self.records[run.name]
            figures = {
                readout: metrics[self.plan.pick_by]
                for readout, metrics in (record.get("val") or {}).items()
                if _finite(metrics.get(self.plan.pick_by))
            }
            if not figures:
                continue
            readout = max(figures, key=figures.__getitem__)
            record["val_figure"] = {"readout": readout, self.plan.pick_by: figures[readout]}
            if run.bundle not in picked or figures[readout] > picked[run.bundle][0]:
                picked[run.bundle] = (figures[readout], run.name)
        for record in self.records.values():
            record["picked"] = picked.get(record["bundle"], (None, None))[1] == record["name"]
        return {bundle: name for bundle, (_, name) in picked.items()}

    def test_picked(self, picked: dict[str, str]) -> None:
        runs = {run.name: run for run in self.plan.runs}
        drive([self.score(runs[name], "test") for name in picked.values()], self.after)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def hand_back(campaign: Campaign, picked: dict[str, str]) -> tuple[list[str], list[dict]]:
    """The paths (under the runs folder) that go back: the picked bundles, then the checkpoints of cut runs,
    each while the whole still fits what the device tool brings back; and what was left out, with its size."""
    wanted = [[f"{name}/manifest.json", f"{name}/weights.safetensors"] for name in picked.values()]
    wanted += [[f"{r['name']}/checkpoint"] for r in campaign.records.values() if r.get("checkpoint")]
    paths: list[str] = []
    left_out = []
    room = HAND_BACK_BYTES - 10240  # a tar ends with two 512-byte blocks, padded to 10 KiB
    for group in wanted:
        size = sum(tar_bytes(campaign.runs_dir / path) for path in group)
        if size <= room:
            paths += group
            room -= size
        else:
            left_out.append({"paths": group, "bytes": size, "why": "more than the device tool brings back"})
    return paths, left_out


def tar_bytes(path: Path) -> int:
    """What `path` takes in a tar: a 512-byte header per entry and each file's bytes padded to 512."""
    entries = [path, *path.rglob("*")] if path.is_dir() else [path]
    return sum(512 + (512 * math.ceil(entry.stat().st_size / 512) if entry.is_file() else 0) for entry in entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path)
    parser.add_argument("--runs", type=Path, required=True, help="folder of the runs (carried in to resume)")
    parser.add_argument("--out", type=Path, required=True, help="where campaign.json goes")
    parser.add_argument("--hand-back", type=Path, required=True, help="file to list the paths to hand back in")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--limit", type=float, required=True, help="seconds for the whole campaign")
    parser.add_argument("--score-seconds", type=float, required=True, help="of those, kept for scoring")
    args = parser.parse_args(argv)
    try:
        plan = read_plan(args.plan)
        check_methods_load(args.plan, plan)
    except PlanError as exc:
        print(f"campaign: {exc}", file=sys.stderr)
        return 2
    args.runs.mkdir(parents=True, exist_ok=True)
    campaign = Campaign(plan, args.runs, args.device, args.limit, args.score_seconds)
    campaign.train_all()
    picked = campaign.pick()
    if plan.score_test:
        campaign.test_picked(picked)
    paths, left_out = hand_back(campaign, picked)
    args.hand_back.write_text("".join(f"{path}\n" for path in paths))
    report = {
        "plan": str(args.plan),
        "device": args.device,
        "limit_seconds": args.limit,
        "pick_by": plan.pick_by,
        "anomalous_only": plan.anomalous_only,
        "picked": picked,
        "test_scored": plan.score_test,
        "runs": list(campaign.records.values()),
        "handed_back": paths,
        "left_out": left_out,
    }
    (args.out / "campaign.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"picked": picked, "status": {r["name"]: r.get("status") for r in report["runs"]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
