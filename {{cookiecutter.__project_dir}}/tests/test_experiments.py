"""`sweep` and `repeat`: the space's errors, trials that are ordinary runs, pruning, a killed sweep continued,
parallel trials, a shared PostgreSQL study, and the spread of seeds and folds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import torch
import yaml
from conftest import PROJECT_ROOT, QUIET, TASKS, launch_env
from optuna.trial import TrialState

from {{ cookiecutter.__package }} import ConfigError
from {{ cookiecutter.__package }}.cli import run
from {{ cookiecutter.__package }}.data.base import fold_split
from {{ cookiecutter.__package }}.experiments import main, sweep
from {{ cookiecutter.__package }}.experiments.space import load_space

needs_xor = pytest.mark.skipif("xor" not in TASKS, reason="the project has no xor task")
XOR = str(PROJECT_ROOT / "configs" / "xor.yaml")
XOR_SPACE = str(PROJECT_ROOT / "configs" / "sweeps" / "xor.yaml")
SHORT = [*QUIET, "--trainer.max_epochs", "3"]


def sweep_args(*args: str, trials: int = 3) -> list[str]:
    return ["--config", XOR, "--space", XOR_SPACE, "--trials", str(trials), *SHORT, *args]


def postgres_programs() -> Path | None:
    """The folder of PostgreSQL's initdb, pg_ctl and createdb: on PATH, or where Debian's package puts them."""
    found = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    return Path(found).resolve().parent if found else None  # a link on PATH to the real folder


def study_of(folder: Path, name: str = "xor") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/runs/xor/sweeps/{name}.db")


def four_complete(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The complete trials of a 4-trial study that two workers ran, checked to be 4. Two workers that both see a last
    trial to run both start one: the later ends at once, failed as surplus, and is the only other kind allowed."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4 and all(t.user_attrs.get("surplus") for t in trials if t not in complete)
    return complete


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model.lr: {low: 0.5, high: 0.1}", "model.lr has low 0.5 > high 0.1; swap them"),
        ("model.hidden: []", "model.hidden has no choices"),
        ("model.lr: {low: 0, high: 1, log: true}", "a log scale needs low > 0"),
        ("model.lr: 0.1", "give a range (low, high, and log or step) or a list of choices"),
        ("lr: [0.1]", "a searched option is a fit option under model, data, trainer"),
        ("{}", "no options to search"),
    ],
)
def test_a_bad_space_is_one_line(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_space(path)


def test_a_space_that_is_not_a_yaml_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_space(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"--space .*: not a YAML file \(\[Errno 21\] Is a directory"):
        load_space(tmp_path)
    (tmp_path / "space.yaml").write_text("model.lr: {low: 0.1, high: [\n")
    with pytest.raises(ConfigError, match=r"space.yaml: not a YAML file \(while parsing a flow"):
        load_space(tmp_path / "space.yaml")


@needs_xor
def test_an_option_fit_lacks_is_refused_before_any_trial(workdir, capsys):
    space = workdir / "space.yaml"
    space.write_text("model.lr: {low: 0.01, high: 0.1}\nmodel.hiden: [2, 4]\n")
    with pytest.raises(ConfigError, match=r"model.hiden is not an option of `fit --config .*xor.yaml`"):
        main("sweep", ["--config", XOR, "--space", str(space), *SHORT], run)
    assert not (workdir / "runs").exists()


@needs_xor
def test_a_database_that_cannot_be_reached_is_named(workdir):
    url = "postgresql+psycopg://sweeper:secret@127.0.0.1:9/nowhere"
    with pytest.raises(ConfigError, match=r"postgresql\+psycopg://sweeper:\*\*\*@127.0.0.1:9/nowhere: cannot open"):
        main("sweep", [*sweep_args(), "--storage", url], run)


def test_a_sweep_that_loses_the_race_to_make_the_tables_finds_them_made(tmp_path, monkeypatch):
    """Sweeps started at once on a new database all make its tables; the losers get an error, and try again."""
    made = []

    def tables_made_by_another(*args, **kwargs):
        if not made:
            made.append(1)
            raise sqlalchemy.exc.OperationalError("CREATE TABLE studies", {}, Exception("table studies already exists"))
        return real(*args, **kwargs)

    real = sweep.RDBStorage
    monkeypatch.setattr(sweep, "RDBStorage", tables_made_by_another)
    monkeypatch.setattr(sweep.time, "sleep", lambda seconds: None)
    plan = sweep.Plan([], [], f"sqlite:///{tmp_path}/s.db", "s", 1, "val_loss", "minimize", "none", 60, None)
    assert isinstance(sweep.storage(plan), optuna.storages.RDBStorage) and made == [1]


@needs_xor
def test_a_sweep_makes_a_run_per_trial_and_its_best_config_runs_again(workdir, capsys):
    main("sweep", sweep_args(), run)
    study = study_of(workdir)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    folders = {Path(t.user_attrs["run"]) for t in trials}
    assert len(folders) == 3 and all(folder.parent == workdir / "runs" / "xor" for folder in folders)
    for trial in trials:  # each run's config.yaml holds what the trial sampled, and no sweep machinery
        config = yaml.safe_load((Path(trial.user_attrs["run"]) / "config.yaml").read_text())
        assert config["model"]["init_args"]["lr"] == pytest.approx(trial.params["model.lr"])
        assert config["model"]["init_args"]["hidden"] == trial.params["model.hidden"]
        assert config["trainer"]["callbacks"] is None
        assert len(trial.intermediate_values) == 3  # one report per epoch
    out = workdir / "runs" / "xor" / "sweeps" / "xor"
    names = {"summary.json", "history.png", "importance.png", "slice_model.lr.png", "slice_model.hidden.png"}
    assert {path.name for path in out.iterdir()} == names
    summary = json.loads((out / "summary.json").read_text())
    best = study.best_trial
    assert summary["best"]["number"] == best.number and summary["best"]["value"] == best.value
    assert f"best: trial {best.number}, val_loss {best.value:.6g}" in capsys.readouterr().out

    again = run(["fit", "--config", summary["best"]["config"], *QUIET])  # no study, no sweep options
    assert float(again.trainer.checkpoint_callback.best_model_score) == pytest.approx(best.value, abs=1e-6)
    assert Path(again.trainer.log_dir) not in folders


@needs_xor
def test_the_pruner_stops_a_trial_after_its_first_epoch(workdir, monkeypatch):
    class AfterTheFirst(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            return trial.number > 0

    monkeypatch.setitem(sweep.PRUNERS, "median", AfterTheFirst)
    main("sweep", sweep_args(), run)
    trials = study_of(workdir).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    for trial, epochs in zip(trials, (3, 1, 1), strict=True):
        last = torch.load(Path(trial.user_attrs["run"]) / "checkpoints" / "last.ckpt", weights_only=False)
        assert last["epoch"] + 1 == epochs and len(trial.intermediate_values) == epochs


@needs_xor
def test_a_seeded_sweep_samples_the_same_options_again(workdir):
    one_epoch = ["--trainer.max_epochs", "1", "--pruner", "none", "--seed", "7"]
    for study in ("first", "second"):
        main("sweep", [*sweep_args(*one_epoch, trials=2), "--study", study], run)
    first, second = ([t.params for t in study_of(workdir, name).get_trials()] for name in ("first", "second"))
    assert first == second and first[0] != first[1]


@needs_xor
@pytest.mark.slow  # two sweeps
def test_a_restarted_sweep_continues_the_study_to_its_count(workdir, capsys):
    main("sweep", sweep_args(trials=2), run)
    main("sweep", sweep_args(trials=2), run)  # nothing left to do
    main("sweep", sweep_args(trials=3), run)  # one more
    assert [t.state for t in study_of(workdir).get_trials()] == [TrialState.COMPLETE] * 3
    space = workdir / "space.yaml"
    space.write_text("model.lr: {low: 0.01, high: 0.1}\n")
    with pytest.raises(ConfigError, match="study xor in sqlite:///runs/xor/sweeps/xor.db searched another space"):
        main("sweep", [*sweep_args(), "--space", str(space)], run)


@needs_xor
@pytest.mark.slow  # a process of its own, killed
def test_a_sweep_killed_mid_trial_retries_that_trial_once(workdir):
    command = [sys.executable, "-m", "{{ cookiecutter.__package }}", "sweep", *sweep_args(trials=2), "--heartbeat", "1"]
    command[command.index("3", command.index("--trainer.max_epochs"))] = "60"  # a trial long enough to be killed
    sweeper = subprocess.Popen(command, env=launch_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database = workdir / "runs" / "xor" / "sweeps" / "xor.db"
    deadline = time.monotonic() + 120
    while True:  # until trial 0 has reported an epoch
        assert time.monotonic() < deadline and sweeper.poll() is None, "trial 0 never ran"
        try:
            trials = study_of(workdir).get_trials() if database.exists() else []
        except (KeyError, sqlalchemy.exc.SQLAlchemyError):  # the sweep is making the database and the study
            trials = []
        if trials and trials[0].intermediate_values:
            break
        time.sleep(0.2)
    sweeper.send_signal(signal.SIGKILL)
    sweeper.wait()
    assert study_of(workdir).get_trials()[0].state == TrialState.RUNNING  # as the killed process left it
    time.sleep(3)  # past its grace period (2 heartbeats): the next worker sees it dead

    main("sweep", [*sweep_args(trials=2), "--heartbeat", "1"], run)
    trials = study_of(workdir).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    retry = trials[1]
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    assert retry.params == trials[0].params
    assert len({t.user_attrs["run"] for t in trials}) == 3  # the retry ran in a run folder of its own


@needs_xor
@pytest.mark.slow
def test_two_jobs_run_trials_at_once_in_their_own_folders(workdir):
    subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.__package }}", "sweep", *sweep_args(trials=4), "--jobs", "2"],
        env=launch_env(),
        check=True,
        capture_output=True,
    )
    trials = study_of(workdir).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    folders = [t.user_attrs["run"] for t in trials]
    assert len(set(folders)) == 4 and all((Path(f) / "checkpoints" / "best.ckpt").is_file() for f in folders)
    starts, ends = sorted(t.datetime_start for t in trials), sorted(t.datetime_complete for t in trials)
    assert starts[1] < ends[0]  # two trials ran at the same time


@needs_xor
def test_repeat_sums_up_the_runs_it_made(workdir, capsys):
    main("repeat", ["--config", XOR, "--seeds", "0-2", *SHORT, "--output", "summary"], run)
    summary = json.loads((workdir / "summary" / "summary.json").read_text())
    assert [row["seed"] for row in summary["runs"]] == [0, 1, 2]
    assert all(row["epochs"] == 3 and row["fit_seconds"] > 0 for row in summary["runs"])  # SHORT's max_epochs
    assert (workdir / "summary" / "spread.png").is_file()
    losses = []
    for row in summary["runs"]:  # the test metric, measured again from each run's best.ckpt
        tested = run(["test", "--config", XOR, "--ckpt_path", f"{row['run']}/checkpoints/best.ckpt", *QUIET])
        losses.append(float(tested.trainer.callback_metrics["test_loss"]))
        assert row["test_loss"] == pytest.approx(losses[-1], abs=1e-6)
    spread = summary["metrics"]["test_loss"]
    assert spread["mean"] == pytest.approx(statistics.fmean(losses), abs=1e-6)
    assert spread["std"] == pytest.approx(statistics.stdev(losses), abs=1e-6) and spread["std"] > 0
    assert spread["min"] == pytest.approx(min(losses), abs=1e-6) and set(summary["metrics"]) >= {"val_loss", "val_acc"}
    assert "mean" in capsys.readouterr().out


@pytest.mark.parametrize(("seeds", "expected"), [("0-2", [0, 1, 2]), ("3", [3]), ("1,5,7", [1, 5, 7])])
def test_seeds_are_a_range_or_a_list(seeds, expected):
    from {{ cookiecutter.__package }}.experiments.repeat import seeds_of

    assert seeds_of(seeds) == expected


@needs_xor
@pytest.mark.parametrize("seeds", ["4-2", "0..4", "a"])
def test_bad_seeds_are_one_line(workdir, seeds):
    with pytest.raises(ConfigError, match=f"--seeds {seeds}: give a range like 0-4 or a list like 0,3,7"):
        main("repeat", ["--config", XOR, "--seeds", seeds], run)


@needs_xor
def test_repeat_refuses_folds_where_the_data_cannot_make_them(workdir):
    with pytest.raises(ConfigError, match="--folds: XORDataModule cannot make folds"):
        main("repeat", ["--config", XOR, "--seeds", "0", "--folds", "3", *SHORT], run)


def test_folds_validate_each_example_once():
    parts = [fold_split(50, 4, fold, seed=0) for fold in range(4)]
    vals = [set(val) for _, val in parts]
    assert sorted(i for val in vals for i in val) == list(range(50))  # each example in one validation fold
    assert all(set(train).isdisjoint(val) and len(train) + len(val) == 50 for train, val in parts)


@pytest.mark.slow  # a run per fold
@pytest.mark.skipif("linear_regression" not in TASKS, reason="the project has no linear_regression task")
def test_repeat_over_folds_runs_every_fold(workdir):
    config = str(PROJECT_ROOT / "configs" / "linear_regression.yaml")
    main("repeat", ["--config", config, "--seeds", "0", "--folds", "3", *SHORT, "--output", "out"], run)
    rows = json.loads((workdir / "out" / "summary.json").read_text())["runs"]
    assert [row["fold"] for row in rows] == [0, 1, 2]
    saved = [yaml.safe_load((Path(row["run"]) / "config.yaml").read_text())["data"]["init_args"] for row in rows]
    assert [(s["folds"], s["fold"]) for s in saved] == [(3, 0), (3, 1), (3, 2)]
    assert len({row["val_loss"] for row in rows}) == 3  # three validation sets
    assert len({round(row["test_loss"], 6) for row in rows}) == 3 and len({row["test_mse"] for row in rows}) == 3


@needs_xor
@pytest.mark.slow
@pytest.mark.skipif(postgres_programs() is None, reason="no PostgreSQL server programs (apt install postgresql)")
def test_two_machines_share_one_study_in_postgresql(tmp_path):
    """A throwaway server; two workers in two working folders ("machines") run one study of 4 trials."""
    initdb, pg_ctl, createdb = (str(postgres_programs() / name) for name in ("initdb", "pg_ctl", "createdb"))
    server = Path(tempfile.mkdtemp(prefix="postgres-"))  # not under pytest's folders, which only root can enter
    as_server = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []  # PostgreSQL refuses to run as root
    if as_server:
        shutil.chown(server, "nobody")
    data, port = server / "data", str(20000 + os.getpid() % 10000)
    subprocess.run([*as_server, initdb, "-D", str(data), "-U", "sweeper", "--auth=trust"], check=True)
    options = f"-p {port} -k {server} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_server, pg_ctl, "-D", str(data), "-o", options, "-w", "start"], check=True)
    try:
        subprocess.run([createdb, "-h", "127.0.0.1", "-p", port, "-U", "sweeper", "sweeps"], check=True)
        url = f"postgresql+psycopg://sweeper@127.0.0.1:{port}/sweeps"
        machines = [tmp_path / "machine_a", tmp_path / "machine_b"]
        command = [sys.executable, "-m", "{{ cookiecutter.__package }}", "sweep", *sweep_args(trials=4)]
        workers = []
        for folder in machines:
            folder.mkdir()
            workers.append(subprocess.Popen([*command, "--storage", url], cwd=folder, env=launch_env()))
        assert [worker.wait(timeout=300) for worker in workers] == [0, 0]
        study = optuna.load_study(study_name="xor", storage=url)
        trials = study.get_trials()
        assert [t.number for t in trials] == list(range(len(trials)))  # numbered by the database, none twice
        complete = four_complete(trials)
        folders = [Path(trial.user_attrs["run"]) for trial in complete]  # each on the machine that ran it
        assert all((f / "checkpoints" / "best.ckpt").is_file() for f in folders) and len(set(folders)) == 4
        assert {f.parents[2] for f in folders} == set(machines)  # both machines ran trials
        for folder in machines:  # both print the same best trial
            summary = json.loads((folder / "runs" / "xor" / "sweeps" / "xor" / "summary.json").read_text())
            assert summary["best"]["number"] == study.best_trial.number
    finally:
        subprocess.run([*as_server, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(server, ignore_errors=True)


@needs_xor
@pytest.mark.slow  # two processes
def test_two_sweeps_started_at_once_share_a_new_sqlite_study(tmp_path):
    """A sweep per GPU, in one folder: both make the new database's tables at once, and one study comes out."""
    command = [sys.executable, "-m", "{{ cookiecutter.__package }}", "sweep", *sweep_args(trials=4)]
    workers = [subprocess.Popen(command, cwd=tmp_path, env=launch_env()) for _ in range(2)]
    assert [worker.wait(timeout=300) for worker in workers] == [0, 0]
    complete = four_complete(study_of(tmp_path).get_trials())
    assert len({t.user_attrs["run"] for t in complete}) == 4  # a run folder each, none claimed twice
