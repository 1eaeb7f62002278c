"""Shared fixtures: a learnable toy task and tiny models built in code (no downloads)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile

# Intel MKL may pick different code paths for differently aligned buffers, so two processes can differ
# in the last bit of a matrix product. Resume tests compare weights bit for bit: ask MKL for one path.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
# One intra-op thread, here and in every greenlm process a test starts (they inherit this environment). The tests'
# models are tiny (hidden 16-32): a second thread gains nothing on them, and where the CPUs are shared (CI on a
# 2-core machine beside other jobs) PyTorch's threads wait for each other at every operation. Measured on a busy
# 2-core machine: tests/test_train_loop.py and tests/test_early_exit_stage.py took 297 s with two threads, 47 s with
# one. A test that times a given thread count still sets it (torch.set_num_threads, --threads).
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    TEST_THREADS = max(1, int(os.environ["OMP_NUM_THREADS"]))
except ValueError:
    TEST_THREADS = 1
# Price tags go to the ledger by default: keep the tests' out of the user's own ledger.
os.environ["GREENLM_HOME"] = tempfile.mkdtemp(prefix="greenlm-tests-home-")
# ... and out of the user's settings (region, PUE, price, ledger: greenlm.measure.settings); GREENLM_HOME above
# also moves the user's settings file into that empty folder.
for _name in ("GREENLM_REGION", "GREENLM_PUE", "GREENLM_USD_PER_HOUR", "GREENLM_LEDGER", "GREENLM_SETTINGS"):
    os.environ.pop(_name, None)

import pytest

from greenlm.data import Task, TaskSplit

from _postgres import pg_url  # noqa: F401 (the PostgreSQL fixture: GREENLM_TEST_POSTGRES_URL, a schema per test)

POSITIVE = ["good", "great", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "film", "was", "a", "plot", "actor", "very", "quite", "story", "it", "and", "scene"]


def toy_split(n: int, seed: int) -> TaskSplit:
    """Sentences whose label is decided by one sentiment word among fillers: learnable by a tiny model."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randrange(2)
        words = rng.choices(FILLER, k=rng.randint(3, 12))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(label)
    return TaskSplit(text_a=texts, text_b=None, labels=labels)


def make_toy_task(n_train: int = 256, n_dev: int = 64) -> Task:
    return Task(
        name="toy",
        labels=("neg", "pos"),
        text_fields=("text",),
        splits={"train": toy_split(n_train, 0), "dev": toy_split(n_dev, 1)},
        credit="generated in tests",
    )


@pytest.fixture(autouse=True)
def no_price_tag_left_running():
    """A test that leaves a PriceTag running would make every later tag its phase: fail that test instead."""
    from greenlm.measure import pricetag

    yield
    leaked = pricetag._active.get()
    if leaked is not None:
        pricetag._active.set(None)
        pytest.fail(f"the test left PriceTag {leaked.name!r} running")


@pytest.fixture(autouse=True)
def reset_torch_threads():
    """greenlm's runtimes pin PyTorch's thread count for the whole process (TorchRuntime: the physical cores) and
    leave it so: put the tests' count back, or every later test in this process trains on that many threads."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != TEST_THREADS:
        torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True, scope="session")
def short_inference_energy_window():
    """``greenlm run``'s measuring pass repeats each model's inference for at least 2 s so that its energy reading
    spans a long enough window (pipeline.measure_pass). The tests check that the reading is made and reported, not
    how precise it is: 0.2 s a model in this process (a greenlm process a test starts keeps the 2 s)."""
    from greenlm.pipeline import measure_pass

    saved = measure_pass._MIN_ENERGY_WINDOW_S
    measure_pass._MIN_ENERGY_WINDOW_S = 0.2
    yield
    measure_pass._MIN_ENERGY_WINDOW_S = saved


@pytest.fixture
def toy_task() -> Task:
    return make_toy_task()


def write_toy_task_files(folder, n_train: int = 256, n_dev: int = 64) -> None:
    """The toy task as TSV files a user would give (text<TAB>label)."""
    task = make_toy_task(n_train, n_dev)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "dev"):
        split = task.splits[name]
        lines = ["text\tlabel"] + [f"{t}\t{task.labels[y]}" for t, y in zip(split.text_a, split.labels)]
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def toy_task_dir(tmp_path):
    folder = tmp_path / "toy"
    write_toy_task_files(folder)
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP barrier waits on a busy machine (10-1000x slower with 2). Use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def one_error_line(result) -> str:
    """The one line a refused command printed (exit code 2, no traceback; ``note:`` lines aside)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def stage_runner(method: str):
    """``run(source, task, config, out, work_dir=..., ...) -> metrics``: one method through the stage shell,
    as ``greenlm <method>`` runs it (quiet, no ledger)."""
    from greenlm.stage import run_stage

    def run(source, task, config, out, *, work_dir=None, progress=False, on_note=lambda _: None, teacher_dir=None):
        return run_stage(method, source, task, config, out, work_dir=work_dir, teacher_dir=teacher_dir,
                         progress=progress, on_note=on_note, ledger=False).metrics

    return run


def finetune_folder(task, model_spec: str, out, config, *, max_length: int = 128, train_subset=None,
                    progress: bool = False, on_note=lambda _: None):
    """Fine-tune ``model_spec`` into the folder ``out`` as ``greenlm train`` does (``config``: a TrainConfig)."""
    import dataclasses

    from greenlm.pipeline.finetune_stage import FinetuneStageConfig
    from greenlm.stage import run_stage

    settings = FinetuneStageConfig(**dataclasses.asdict(config), max_length=max_length, train_subset=train_subset)
    return run_stage("finetune", model_spec, task, settings, out, progress=progress, on_note=on_note, ledger=False)


def greenlm_in_process(*args: str, stdin: str | None = None, env: dict | None = None,
                       cwd=None) -> subprocess.CompletedProcess:
    """``greenlm ARGS`` as ``python -m greenlm ARGS`` runs it, in this process: the same entry point
    (``greenlm.cli.main.main``: one-line errors, exit codes), ``stdin`` given, stdout and stderr as text; ``env`` is
    the whole environment and ``cwd`` the working folder for the length of the call (as ``subprocess.run`` takes
    them). A process of its own costs seconds of imports (torch, transformers) before any work: the tests where the
    process matters (a signal, kill -9, processes side by side, what a fresh interpreter prints) still start one."""
    import io

    from greenlm.cli.main import main

    def text_stream(data: bytes = b"") -> io.TextIOWrapper:
        return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", write_through=True)

    out, err = text_stream(), text_stream()
    saved = (sys.argv, sys.stdin, sys.stdout, sys.stderr, dict(os.environ), os.getcwd())
    sys.argv, sys.stdout, sys.stderr = ["greenlm", *args], out, err
    sys.stdin = text_stream((stdin or "").encode("utf-8"))
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        if cwd is not None:
            os.chdir(cwd)
        try:
            main()
            code = 0
        except SystemExit as stop:  # main() always ends in one
            if stop.code is None or isinstance(stop.code, int):
                code = stop.code or 0
            else:  # sys.exit("message"), as the interpreter would print it
                print(stop.code, file=err)
                code = 1
        return subprocess.CompletedProcess(["greenlm", *args], code, out.buffer.getvalue().decode("utf-8"),
                                           err.buffer.getvalue().decode("utf-8"))
    finally:
        sys.argv, sys.stdin, sys.stdout, sys.stderr, environ, cwd_before = saved
        os.chdir(cwd_before)
        os.environ.clear()
        os.environ.update(environ)
