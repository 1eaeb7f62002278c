"""The hostile rerun of issue 19: the real ``greenlm`` command, run as a new user would misuse it.

Every case runs ``python -m greenlm ...`` in a fresh process (a timeout per case) on a tiny model built once at the
start (``tiny:`` spec, trained by ``greenlm train`` on a generated two-class task), and is judged on what a person
would see:

- ``traceback``: stderr holds "Traceback (most recent call last)";
- ``hang``: the case ran past its timeout (killed);
- ``accepted``: an input that must be refused ended with exit code 0;
- ``broken``: a folder or record was left half-written or lost: the case's own check of its output failed, or the
  corrected command run afterwards (``rerun``) did not succeed;
- ``unclear``: a refusal that is not one ``greenlm: error:`` line with exit code 2 (or an exit code other than the
  expected one), or a good input refused.

Kinds of case: bad option values (negative, zero, huge, nan, inf, wrong type, empty), wrong file kinds (a folder
where a file belongs, empty, binary, truncated, BOM, CRLF, one class, unseen labels, duplicate columns, a 1 MB line,
zero rows), wrong model folders (another format, config only, an ONNX file, a damaged safetensors header), two
commands writing the same output at once, kill -9 mid-write then the same command again, read-only and full output
file systems (a tmpfs mount where the machine allows one, skipped otherwise), and junk in GREENLM_* variables.

    python benchmarks/hostile_cli.py                 # all cases; writes benchmarks/results/hostile_cli.json
    python benchmarks/hostile_cli.py --only eval-    # the cases whose name contains 'eval-'
    python benchmarks/hostile_cli.py --doc           # also writes its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "hostile_cli.json"
TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"
TRACEBACK = "Traceback (most recent call last)"
ERROR_PREFIX = "greenlm: error:"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

POSITIVE = ["good", "great", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "film", "was", "a", "plot", "actor", "very", "quite", "story", "it", "and", "scene"]


# ---- the workspace every case shares ------------------------------------------------------------------------


def toy_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Sentences whose label is one sentiment word among fillers: a tiny model learns them in one epoch."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        words = rng.choices(FILLER, k=rng.randint(3, 10))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if positive else NEGATIVE))
        rows.append((" ".join(words), "pos" if positive else "neg"))
    return rows


def tsv_text(rows, header: str = "text\tlabel", newline: str = "\n") -> str:
    return newline.join([header, *("\t".join(row) for row in rows)]) + newline


def write_task(folder: Path, train=None, dev=None, *, ext: str = "tsv", train_text: str | bytes | None = None,
               dev_text: str | bytes | None = None) -> Path:
    """A task folder: rows (tuples) or the raw text/bytes of each file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows, raw in (("train", train, train_text), ("dev", dev, dev_text)):
        if raw is None and rows is None:
            rows = toy_rows(160 if name == "train" else 40, 0 if name == "train" else 1)
        path = folder / f"{name}.{ext}"
        if raw is not None:
            path.write_bytes(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
        else:
            path.write_text(tsv_text(rows), encoding="utf-8")
    return folder


def grid_series(hours: int = 24 * 21) -> str:
    start = datetime(2024, 3, 1, tzinfo=timezone.utc)
    lines = ["timestamp_utc,region,gco2_per_kwh"]
    for h in range(hours):
        t = start + timedelta(hours=h)
        lines.append(f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')},XX,{300 + 120 * ((h % 24) in range(10, 16)) + h % 7}")
    return "\n".join(lines) + "\n"


@dataclass
class Workspace:
    root: Path
    task: Path = None
    model: Path = None
    dyn_model: Path = None  # trained with --record-dynamics (for greenlm datamap)
    onnx: Path = None
    recipe: Path = None
    series: Path = None
    corpus: Path = None

    def env(self, extra: dict | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLM_")}
        env.update({"HF_HUB_OFFLINE": "1", "GREENLM_HOME": str(self.root / "home"), "PYTHONWARNINGS": "ignore",
                    "OMP_NUM_THREADS": "1", "GREENLM_CACHE_DIR": str(self.root / "cache"),
                    "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
        env.update(extra or {})
        return {k: v for k, v in env.items() if v is not None}


def greenlm(ws: Workspace, args: list[str], *, cwd: Path, env: dict | None = None, timeout: float = 120,
            stdin: bytes | None = None) -> dict:
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "greenlm", *args], cwd=cwd, env=ws.env(env), input=stdin,
                              capture_output=True, timeout=timeout, start_new_session=True)
        code, out, err, hung = done.returncode, done.stdout, done.stderr, False
    except subprocess.TimeoutExpired as expired:
        code, out, err, hung = None, expired.stdout or b"", expired.stderr or b"", True
    return {"code": code, "stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace"),
            "hung": hung, "seconds": round(time.perf_counter() - started, 2)}


def build_workspace(root: Path) -> Workspace:
    ws = Workspace(root)
    ws.task = write_task(root / "toy")
    ws.recipe = root / "recipe.yaml"
    ws.recipe.write_text(
        f"name: tiny\ntask: {ws.task}\nteacher: '{TINY}'\nmeasure: {{region: USA, pue: 1.2}}\n"
        "evaluation: {speed_examples: 16, latency_examples: 4, repeats: 1}\n"
        "stages:\n  finetune: {epochs: 1, learning_rate: 3.0e-3, batch_size: 16, max_length: 32}\n")
    ws.series = root / "grid.csv"
    ws.series.write_text(grid_series())
    ws.corpus = root / "corpus.txt"
    ws.corpus.write_text("\n".join(text for text, _ in toy_rows(300, 7)) + "\n")
    ws.model = root / "model"
    made = greenlm(ws, ["train", "--task", str(ws.task), "--model", TINY, "--epochs", "1", "--learning-rate", "3e-3",
                        "--out", str(ws.model), "--no-progress"], cwd=root, timeout=300)
    if made["code"] != 0:
        raise SystemExit(f"could not train the tiny model:\n{made['stderr']}")
    ws.dyn_model = root / "dyn-model"
    made = greenlm(ws, ["train", "--task", str(ws.task), "--model", TINY, "--epochs", "2", "--learning-rate", "3e-3",
                        "--record-dynamics", "--out", str(ws.dyn_model), "--no-progress"], cwd=root, timeout=300)
    if made["code"] != 0:
        raise SystemExit(f"could not train the tiny model with --record-dynamics:\n{made['stderr']}")
    ws.onnx = root / "onnx"
    made = greenlm(ws, ["export", str(ws.model), "--out", str(ws.onnx), "--optimize", "off"], cwd=root, timeout=300)
    if made["code"] != 0:
        raise SystemExit(f"could not export the tiny model:\n{made['stderr']}")
    return ws


# ---- cases ------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str  # unique; the first word is the command
    args: Callable  # (ws, d) -> argv after 'greenlm'; d is the case's own empty folder
    expect: str = "refuse"  # refuse | accept | any (0 or 2) | code:N
    prepare: Callable | None = None  # (ws, d) -> None: writes the hostile files
    env: Callable | dict | None = None  # extra environment (or (ws, d) -> dict)
    stdin: bytes | None = None
    check: Callable | None = None  # (ws, d, result) -> problem or None: what must hold afterwards
    rerun: Callable | None = None  # (ws, d) -> argv: the corrected command, which must then succeed
    kind: str = "plain"  # plain | concurrent | kill9
    kill_when: Callable | None = None  # kill9: (ws, d) -> bool, polled; the process is killed when it turns true
    timeout: float = 90
    needs_root: bool = False  # a mount: skipped (and said) where the machine cannot mount

    @property
    def command(self) -> str:
        return self.name.split("-")[0] if not self.name.startswith(("early-exit", "convert-attention")) else \
            "-".join(self.name.split("-")[:2])


def no_path(rel: str) -> Callable:
    """A check: nothing was left at ``d/rel`` (a refused command writes nothing)."""
    def check(ws, d, result):
        path = d / rel
        return f"{rel} was left behind after a refusal" if path.exists() and result["code"] != 0 else None
    return check


def holds_model(rel: str) -> Callable:
    """A check: ``d/rel`` is a whole model folder (config, weights, metrics)."""
    def check(ws, d, result):
        folder = d / rel
        missing = [n for n in ("config.json", "metrics.json") if not (folder / n).is_file()]
        if missing or not any(folder.glob("*.safetensors")) and not (folder / "model.onnx").is_file():
            return f"{rel} is not a whole model folder (missing {missing or 'weights'})"
        try:
            json.loads((folder / "metrics.json").read_text())
        except ValueError:
            return f"{rel}/metrics.json is damaged"
        return None
    return check


def text_file(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def copy_model(ws, d, name="m") -> Path:
    target = d / name
    shutil.copytree(ws.model, target)
    return target


def damage_safetensors_header(ws, d):
    folder = copy_model(ws, d)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes((2**62).to_bytes(8, "little") + data[8:])  # header length: 4 EiB


def safetensors_header_not_json(ws, d):
    folder = copy_model(ws, d)
    data = (folder / "model.safetensors").read_bytes()
    size = int.from_bytes(data[:8], "little")
    (folder / "model.safetensors").write_bytes(data[:8] + b"{" * size + data[8 + size:])


def config_only(ws, d):
    (d / "m").mkdir()
    shutil.copy(ws.model / "config.json", d / "m" / "config.json")


def other_format(ws, d):
    """A GPT-2 style folder: config of another architecture, no classifier head."""
    folder = copy_model(ws, d)
    config = json.loads((folder / "config.json").read_text())
    config.update({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2, "n_embd": 32})
    (folder / "config.json").write_text(json.dumps(config))


def config_bad_types(ws, d):
    folder = copy_model(ws, d)
    config = json.loads((folder / "config.json").read_text())
    config.update({"num_hidden_layers": "two", "hidden_size": -32})
    (folder / "config.json").write_text(json.dumps(config))


def tokenizer_damaged(ws, d):
    folder = copy_model(ws, d)
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": ')


def id2label_mismatch(ws, d):
    folder = copy_model(ws, d)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "neg", "1": "pos", "2": "meh"}
    config["label2id"] = {"neg": 0, "pos": 1, "meh": 2}
    (folder / "config.json").write_text(json.dumps(config))


def metrics_damaged(ws, d):
    folder = copy_model(ws, d)
    (folder / "metrics.json").write_text('{"task": "toy", "splits": {"dev": ')


def _drop_weight(ws, d, part: str):
    """A copy of the model whose weights file lacks every tensor with ``part`` in its name (a truncated save)."""
    from safetensors.torch import load_file, save_file

    folder = copy_model(ws, d)
    state = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in state.items() if part not in k}, folder / "model.safetensors", metadata={"format": "pt"})


def bom_task(ws, d):
    rows = toy_rows(160, 0)
    write_task(d / "t", train_text=b"\xef\xbb\xbf" + tsv_text(rows).encode(),
               dev_text=b"\xef\xbb\xbf" + tsv_text(toy_rows(40, 1)).encode())


def crlf_task(ws, d):
    write_task(d / "t", train_text=tsv_text(toy_rows(160, 0), newline="\r\n"),
               dev_text=tsv_text(toy_rows(40, 1), newline="\r\n"))


def one_class_task(ws, d):
    rows = [(text, "pos") for text, _ in toy_rows(160, 0)]
    write_task(d / "t", train=rows)


def unseen_label_task(ws, d):
    dev = toy_rows(40, 1) + [("an odd one", "meh")]
    write_task(d / "t", dev=dev)


def duplicate_columns_task(ws, d):
    rows = toy_rows(160, 0)
    text = "text\ttext\tlabel\n" + "".join(f"{t}\t{t}\t{y}\n" for t, y in rows)
    write_task(d / "t", train_text=text)


def long_line_task(ws, d):
    rows = toy_rows(160, 0)
    rows[3] = (("lovely " * 150_000).strip(), "pos")  # one 1 MB row
    write_task(d / "t", train=rows)


def zero_row_dev(ws, d):
    write_task(d / "t", dev_text="text\tlabel\n")


def zero_row_train(ws, d):
    write_task(d / "t", train_text="text\tlabel\n")


def header_only_no_newline(ws, d):
    write_task(d / "t", train_text="text\tlabel")


def binary_train(ws, d):
    write_task(d / "t", train_text=bytes(random.Random(3).randrange(256) for _ in range(4096)))


def latin1_train(ws, d):
    rows = toy_rows(160, 0)
    write_task(d / "t", train_text=tsv_text(rows).replace("film", "fílm").encode("latin-1"))


def truncated_jsonl(ws, d):
    lines = [json.dumps({"text": t, "label": y}) for t, y in toy_rows(160, 0)]
    write_task(d / "t", ext="jsonl", train_text="\n".join(lines)[:-9],
               dev_text="\n".join(json.dumps({"text": t, "label": y}) for t, y in toy_rows(40, 1)) + "\n")


def jsonl_nested_label(ws, d):
    lines = [json.dumps({"text": t, "label": {"name": y}}) for t, y in toy_rows(160, 0)]
    write_task(d / "t", ext="jsonl", train_text="\n".join(lines) + "\n",
               dev_text="\n".join(json.dumps({"text": t, "label": y}) for t, y in toy_rows(40, 1)) + "\n")


def jsonl_null_text(ws, d):
    lines = [json.dumps({"text": None if i % 3 == 0 else t, "label": y}) for i, (t, y) in enumerate(toy_rows(160, 0))]
    write_task(d / "t", ext="jsonl", train_text="\n".join(lines) + "\n",
               dev_text="\n".join(json.dumps({"text": t, "label": y}) for t, y in toy_rows(40, 1)) + "\n")


def jsonl_array_lines(ws, d):
    write_task(d / "t", ext="jsonl", train_text="[1, 2]\n[3, 4]\n", dev_text='{"text": "a", "label": "pos"}\n')


def csv_unclosed_quote(ws, d):
    rows = toy_rows(160, 0)
    text = "text,label\n" + "".join(f"{t},{y}\n" for t, y in rows[:50]) + '"never closed,pos\n' + \
        "".join(f"{t},{y}\n" for t, y in rows[50:])
    dev = "text,label\n" + "".join(f"{t},{y}\n" for t, y in toy_rows(40, 1))
    write_task(d / "t", ext="csv", train_text=text, dev_text=dev)


def csv_ragged(ws, d):
    rows = toy_rows(160, 0)
    text = "text,label\n" + "".join(f"{t},{y}{',extra' * (i % 4 == 0)}\n" for i, (t, y) in enumerate(rows))
    dev = "text,label\n" + "".join(f"{t},{y}\n" for t, y in toy_rows(40, 1))
    write_task(d / "t", ext="csv", train_text=text, dev_text=dev)


def tsv_missing_label_cells(ws, d):
    rows = toy_rows(160, 0)
    text = "text\tlabel\n" + "".join(f"{t}\t{'' if i % 10 == 0 else y}\n" for i, (t, y) in enumerate(rows))
    write_task(d / "t", train_text=text)


def gz_not_gzip(ws, d):
    (d / "t").mkdir()
    text_file(d / "t" / "train.tsv.gz", tsv_text(toy_rows(160, 0)))
    text_file(d / "t" / "dev.tsv.gz", tsv_text(toy_rows(40, 1)))


def gz_truncated(ws, d):
    import gzip

    (d / "t").mkdir()
    data = gzip.compress(tsv_text(toy_rows(160, 0)).encode())
    text_file(d / "t" / "train.tsv.gz", data[: len(data) // 2])
    text_file(d / "t" / "dev.tsv.gz", gzip.compress(tsv_text(toy_rows(40, 1)).encode()))


def mixed_formats(ws, d):
    (d / "t").mkdir()
    text_file(d / "t" / "train.tsv", tsv_text(toy_rows(160, 0)))
    text_file(d / "t" / "dev.jsonl", "\n".join(json.dumps({"text": t, "label": y}) for t, y in toy_rows(40, 1)))


def task_yaml(content: str) -> Callable:
    def prepare(ws, d):
        write_task(d / "t")
        text_file(d / "task.yaml", content.replace("{t}", str(d / "t")))
    return prepare


def dir_as_train(ws, d):
    (d / "t" / "train.tsv").mkdir(parents=True)
    text_file(d / "t" / "dev.tsv", tsv_text(toy_rows(40, 1)))


def symlink_loop(ws, d):
    (d / "t").mkdir()
    os.symlink(d / "t" / "train.tsv", d / "t" / "train.tsv")
    text_file(d / "t" / "dev.tsv", tsv_text(toy_rows(40, 1)))


def many_labels(ws, d):
    rows = [(t, f"c{i}") for i, (t, _) in enumerate(toy_rows(160, 0))]  # every row its own class
    write_task(d / "t", train=rows, dev=[(t, f"c{i}") for i, (t, _) in enumerate(toy_rows(40, 1))])


def settings_file(text: str) -> Callable:
    def prepare(ws, d):
        text_file(d / "home" / "settings.toml", text)
    return prepare


def home_env(ws, d):
    return {"GREENLM_HOME": str(d / "home")}


def fifo(ws, d):
    os.mkfifo(d / "fifo")


def corrupt_ledger(ws, d):
    text_file(d / "home" / "ledger.sqlite", b"SQLite format 3\x00" + b"\xde\xad" * 600)


def emissions_other_header(ws, d):
    text_file(d / "emissions.csv", "a,b,c\n1,2,3\n")


def intensity_truncated(ws, d):
    text_file(d / "int.csv", "timestamp_utc,region,gco2_per_kwh\n2024-01-01T00:00:00Z,XX,3")


def series_variant(kind: str) -> Callable:
    def prepare(ws, d):
        text = ws.series.read_text()
        lines = text.splitlines()
        if kind == "nan":
            lines[50] = lines[50].rsplit(",", 1)[0] + ",nan"
        elif kind == "negative":
            lines[50] = lines[50].rsplit(",", 1)[0] + ",-5"
        elif kind == "duplicate":
            lines.insert(51, lines[50])
        elif kind == "empty":
            lines = []
        elif kind == "header":
            lines = lines[:1]
        elif kind == "unsorted":
            lines = [lines[0], *reversed(lines[1:])]
        elif kind == "gap":
            del lines[100:130]
        elif kind == "huge":
            lines[50] = lines[50].rsplit(",", 1)[0] + ",1e400"
        text_file(d / "grid.csv", "\n".join(lines) + ("\n" if lines else ""))
    return prepare


def run_folder(ws, d):
    """A finished tiny run to report on (copied from the one the run cases make, or made now)."""
    done = greenlm(ws, ["run", str(ws.recipe), "--runs-dir", str(d / "runs"), "--no-progress"], cwd=d, timeout=300)
    if done["code"] != 0:
        raise RuntimeError(f"could not make a run folder: {done['stderr'][-2000:]}")


_RUN_CACHE: dict = {}


def cached_run(ws, d):
    """A copy of one finished tiny run (made once per harness)."""
    if "runs" not in _RUN_CACHE:
        base = ws.root / "shared-run"
        base.mkdir(exist_ok=True)
        run_folder(ws, base)
        _RUN_CACHE["runs"] = base / "runs"
    shutil.copytree(_RUN_CACHE["runs"], d / "runs", symlinks=True)


def run_then(change: Callable) -> Callable:
    def prepare(ws, d):
        cached_run(ws, d)
        change(d / "runs" / "tiny")
    return prepare


@contextlib.contextmanager
def mounted(path: Path, options: str):
    """A tmpfs at ``path`` (``ro`` or ``size=``); without root, a read-only folder by permissions instead."""
    path.mkdir(parents=True, exist_ok=True)
    if IS_ROOT:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
        if done.returncode != 0:
            raise _Skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
    elif "ro" in options.split(","):
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
    else:
        raise _Skip("a full disk needs a tmpfs mount, which needs root")


class _Skip(Exception):
    pass


def _exists(rel):
    return lambda ws, d: (d / rel).exists()


def _checkpoint_step(rel: str, at_least: int) -> Callable:
    def ready(ws, d):
        for state in (d / rel).glob("**/checkpoint/state.json"):
            try:
                if json.loads(state.read_text()).get("step", 0) >= at_least:
                    return True
            except ValueError:
                pass
        return False
    return ready


def _after_seconds(seconds: float) -> Callable:
    started = {}

    def ready(ws, d):
        started.setdefault("t", time.time())
        return time.time() - started["t"] >= seconds
    return ready


def emissions_rows(expected: int) -> Callable:
    def check(ws, d, result):
        path = d / "emissions.csv"
        lines = path.read_text().splitlines() if path.is_file() else []
        header = [line for line in lines if line.startswith("timestamp,")]
        if len(lines) - len(header) != expected or len(header) != 1:
            return f"emissions.csv holds {len(lines) - len(header)} rows and {len(header)} headers, not {expected} and 1"
        return None
    return check


def ledger_rows(expected: int) -> Callable:
    def check(ws, d, result):
        done = greenlm(ws, ["ledger", "--records", "--json"], cwd=d, env=home_env(ws, d))
        try:
            rows = json.loads(done["stdout"])
        except ValueError:
            return f"the ledger cannot be read afterwards: {done['stderr'][-300:]}"
        return None if len(rows) >= expected else f"the ledger holds {len(rows)} record(s), {expected} expected"
    return check


def measure_kept_record(ws, d, result):
    """greenlm measure kept the command's exit code and said where the record went."""
    err = result["stderr"]
    if "saved to" in err or "wait in" in err or "pending" in err or "record" in err and "{" in err:
        return None
    return "the record's whereabouts are not said"


def whole_or_nothing(ws, d, result):
    """After a refused write to a full or read-only file system: nothing left but lock files and the resumable work
    folder of a training (.NAME.work, which the same command resumes from once there is room)."""
    out = d / "out"
    left = [p.name for p in out.iterdir() if not p.name.endswith(".lock")
            and not (p.name.startswith(".") and p.name.endswith(".work"))] if out.is_dir() else []
    if result["code"] != 0 and left:
        return f"a refused write left {left} behind"
    return None


def run_report_ok(ws, d, result):
    report = d / "runs" / "tiny" / "report.json"
    try:
        json.loads(report.read_text())
    except (OSError, ValueError) as err:
        return f"runs/tiny/report.json is not whole: {err}"
    return None


def build_cases() -> list[Case]:
    T = TINY
    train = lambda ws, d, *rest, task=None: ["train", "--task", str(task or ws.task), "--model", T, "--epochs", "1",  # noqa: E731
                                             "--out", str(d / "out"), "--no-progress", *rest]
    train_on = lambda *rest: (lambda ws, d: train(ws, d, *rest, task=d / "t"))  # noqa: E731
    ev = lambda *rest: (lambda ws, d: ["eval", str(ws.model), "--task", str(ws.task), "--no-progress", *rest])  # noqa: E731
    ev_model = lambda *rest: (lambda ws, d: ["eval", str(d / "m"), "--task", str(ws.task), "--no-progress", *rest])  # noqa: E731
    method = lambda cmd, *rest: (lambda ws, d: [cmd, str(ws.model), "--task", str(ws.task), "--out", str(d / "out"),  # noqa: E731
                                                "--no-progress", *rest])
    method_on = lambda cmd, *rest: (lambda ws, d: [cmd, str(d / "m"), "--task", str(ws.task), "--out", str(d / "out"),  # noqa: E731
                                                   "--no-progress", *rest])
    measure = lambda *rest: (lambda ws, d: ["measure", "--no-ledger", *rest])  # noqa: E731
    cases: list[Case] = []
    add = cases.append

    # -- train: option values
    for label, opts in [("epochs-zero", ["--epochs", "0"]), ("epochs-neg", ["--epochs", "-2"]),
                        ("batch-zero", ["--batch-size", "0"]), ("lr-nan", ["--learning-rate", "nan"]),
                        ("lr-neg", ["--learning-rate", "-1e-3"]), ("seed-huge", ["--seed", "4294967296"]),
                        ("max-length-zero", ["--max-length", "0"]), ("max-length-word", ["--max-length", "long"]),
                        ("grad-accum-zero", ["--grad-accum", "0"]), ("warmup-two", ["--warmup-ratio", "2"]),
                        ("weight-decay-inf", ["--weight-decay", "inf"]), ("max-steps-neg", ["--max-steps", "-4"]),
                        ("valfrac-nan", ["--validation-fraction", "nan"]), ("checkpoint-every-zero", ["--checkpoint-every", "0"]),
                        ("eval-batch-neg", ["--eval-batch-size", "-1"]), ("train-subset-zero", ["--train-subset", "0"]),
                        ("drop-bogus", ["--drop", "everything"]), ("eval-split-validation", ["--eval-split", "validation"]),
                        ("labels-one", ["--labels", "pos"]), ("labels-empty-items", ["--labels", ",,"]),
                        ("precision-bogus", ["--precision", "fp8"]), ("select-metric-bogus", ["--select-metric", "loss"]),
                        ("max-kwh-nan", ["--max-kwh", "nan"]), ("pue-half", ["--pue", "0.5"]),
                        ("usd-inf", ["--usd-per-hour", "inf"]), ("region-empty", ["--region", ""]),
                        ("report-to-bogus", ["--report-to", "myspace"]), ("pause-above-nan", ["--pause-above", "nan"]),
                        ("max-pause-neg", ["--pause-above", "100", "--grid", "GRID", "--max-pause", "-3h"]),
                        ("on-empty-bogus", ["--on-empty", "maybe"]), ("length-group-neg", ["--length-group-factor", "-1"])]:
        def args(ws, d, opts=opts):
            return train(ws, d, *[str(ws.series) if o == "GRID" else o for o in opts])
        add(Case(f"train-{label}", args, check=no_path("out")))
    for label, opts in [("tiny-layers-zero", "tiny:layers=0"), ("tiny-heads-uneven", "tiny:hidden=32,heads=5"),
                        ("tiny-junk", "tiny:layers=two"), ("tiny-vocab-one", "tiny:vocab=1"),
                        ("model-empty", "")]:
        add(Case(f"train-{label}", lambda ws, d, o=opts: ["train", "--task", str(ws.task), "--model", o, "--epochs", "1",
                                                         "--out", str(d / "out"), "--no-progress"], check=no_path("out")))
    add(Case("train-out-is-file", lambda ws, d: train(ws, d), prepare=lambda ws, d: text_file(d / "out", "x")))
    add(Case("train-out-empty", lambda ws, d: ["train", "--task", str(ws.task), "--model", T, "--out", "", "--no-progress"]))
    add(Case("train-model-config-only", lambda ws, d: ["train", "--task", str(ws.task), "--model", str(d / "m"),
                                                       "--out", str(d / "out"), "--no-progress"],
             prepare=config_only, check=no_path("out")))
    add(Case("train-model-onnx-file", lambda ws, d: ["train", "--task", str(ws.task), "--model", str(ws.onnx / "model.onnx"),
                                                     "--out", str(d / "out"), "--no-progress"], check=no_path("out")))
    add(Case("train-model-onnx-folder", lambda ws, d: ["train", "--task", str(ws.task), "--model", str(ws.onnx),
                                                       "--out", str(d / "out"), "--no-progress"], check=no_path("out")))
    add(Case("train-model-bad-header", lambda ws, d: ["train", "--task", str(ws.task), "--model", str(d / "m"),
                                                      "--out", str(d / "out"), "--no-progress"],
             prepare=damage_safetensors_header, check=no_path("out")))

    # -- task files the train command reads
    for label, prepare, expect in [("bom", bom_task, "accept"), ("crlf", crlf_task, "accept"),
                                   ("one-class", one_class_task, "refuse"), ("unseen-dev-label", unseen_label_task, "refuse"),
                                   ("duplicate-columns", duplicate_columns_task, "refuse"),
                                   ("megabyte-line", long_line_task, "accept"), ("zero-row-dev", zero_row_dev, "refuse"),
                                   ("zero-row-train", zero_row_train, "refuse"),
                                   ("header-no-newline", header_only_no_newline, "refuse"),
                                   ("binary-train", binary_train, "refuse"), ("latin1-train", latin1_train, "refuse"),
                                   ("jsonl-truncated", truncated_jsonl, "refuse"), ("jsonl-nested-label", jsonl_nested_label, "refuse"),
                                   ("jsonl-null-text", jsonl_null_text, "any"), ("jsonl-arrays", jsonl_array_lines, "refuse"),
                                   ("csv-unclosed-quote", csv_unclosed_quote, "any"), ("csv-ragged", csv_ragged, "refuse"),
                                   ("tsv-missing-labels", tsv_missing_label_cells, "refuse"),
                                   ("gz-not-gzip", gz_not_gzip, "refuse"), ("gz-truncated", gz_truncated, "refuse"),
                                   ("mixed-formats", mixed_formats, "any"), ("train-is-dir", dir_as_train, "refuse"),
                                   ("symlink-loop", symlink_loop, "refuse"), ("every-row-a-class", many_labels, "refuse")]:
        add(Case(f"train-task-{label}", train_on(), prepare=prepare, expect=expect,
                 check=holds_model("out") if expect == "accept" else no_path("out"), timeout=150))
    for label, content, expect in [
            ("yaml-truncated", "train: {t}/train.tsv\ndev: [{t}/dev.tsv", "refuse"),
            ("yaml-list", "- {t}/train.tsv\n- {t}/dev.tsv\n", "refuse"),
            ("yaml-train-dir", "train: {t}\ndev: {t}/dev.tsv\n", "refuse"),
            ("yaml-labels-empty", "train: {t}/train.tsv\ndev: {t}/dev.tsv\nlabels: []\n", "refuse"),
            ("yaml-labels-duplicate", "train: {t}/train.tsv\ndev: {t}/dev.tsv\nlabels: [pos, pos]\n", "refuse"),
            ("yaml-label-names-short", "train: {t}/train.tsv\ndev: {t}/dev.tsv\nlabels: [neg, pos]\nlabel_names: [a]\n", "refuse"),
            ("yaml-train-number", "train: 5\ndev: {t}/dev.tsv\n", "refuse"),
            ("yaml-text-fields-three", "train: {t}/train.tsv\ndev: {t}/dev.tsv\ntext_fields: [a, b, c]\n", "refuse"),
            ("yaml-tab-indent", "train: {t}/train.tsv\n\tdev: {t}/dev.tsv\n", "refuse"),
            ("yaml-python-tag", "train: !!python/object/apply:os.system ['true']\ndev: {t}/dev.tsv\n", "refuse"),
            ("yaml-train-urandom", "train: /dev/urandom\ndev: {t}/dev.tsv\n", "refuse"),
            ("json-bom", "\ufeff{{\"train\": \"{t}/train.tsv\", \"dev\": \"{t}/dev.tsv\"}}", "accept")]:
        suffix = ".json" if label.startswith("json") else ".yaml"

        def prepare(ws, d, content=content, suffix=suffix):
            write_task(d / "t")
            text_file(d / f"task{suffix}", content.replace("{{", "{").replace("}}", "}").replace("{t}", str(d / "t")))

        add(Case(f"tasks-check-{label}", lambda ws, d, s=suffix: ["tasks", "check", str(d / f"task{s}"), "--model", T],
                 prepare=prepare, expect=expect))

    # -- eval / predict: model folders and option values
    for label, prepare in [("bad-header", damage_safetensors_header), ("header-not-json", safetensors_header_not_json),
                           ("config-only", config_only), ("other-format", other_format),
                           ("config-bad-types", config_bad_types), ("tokenizer-damaged", tokenizer_damaged),
                           ("metrics-damaged", metrics_damaged)]:
        add(Case(f"eval-model-{label}", ev_model(), prepare=prepare, expect="any" if label == "metrics-damaged" else "refuse"))
    add(Case("eval-model-label-mismatch", ev_model(), prepare=id2label_mismatch))
    add(Case("eval-model-onnx-file", lambda ws, d: ["eval", str(ws.onnx / "model.onnx"), "--task", str(ws.task)]))
    add(Case("eval-model-empty-dir", lambda ws, d: ["eval", str(d), "--task", str(ws.task)]))
    add(Case("eval-model-fifo", lambda ws, d: ["eval", str(d / "fifo"), "--task", str(ws.task)], prepare=fifo, timeout=30))
    add(Case("eval-batch-neg", ev("--batch-size", "-5")))
    add(Case("eval-max-length-neg", ev("--max-length", "-1")))
    add(Case("eval-max-length-huge", ev("--max-length", "100000000")))
    add(Case("eval-split-nosuch", ev("--eval-split", "holdout")))
    add(Case("eval-split-empty", ev("--eval-split", " ")))
    add(Case("eval-onnx-ok", lambda ws, d: ["eval", str(ws.onnx), "--task", str(ws.task), "--no-progress"], expect="accept"))
    add(Case("predict-input-dir", lambda ws, d: ["predict", str(ws.model), str(d)]))
    add(Case("predict-input-fifo", lambda ws, d: ["predict", str(ws.model), str(d / "fifo")], prepare=fifo, timeout=30))
    add(Case("predict-input-bom", lambda ws, d: ["predict", str(ws.model), str(d / "in.txt"), "--no-progress"],
             prepare=lambda ws, d: text_file(d / "in.txt", b"\xef\xbb\xbfgreat film\nawful plot\n"), expect="accept",
             check=lambda ws, d, r: None if len(r["stdout"].splitlines()) == 2 and "\\ufeff" not in r["stdout"] else
             f"expected 2 predictions without the BOM, got {r['stdout'][:200]!r}"))
    add(Case("predict-input-nul", lambda ws, d: ["predict", str(ws.model), str(d / "in.txt"), "--no-progress"],
             prepare=lambda ws, d: text_file(d / "in.txt", b"great\x00film\nawful\n"), expect="any"))
    add(Case("predict-input-latin1", lambda ws, d: ["predict", str(ws.model), str(d / "in.txt"), "--no-progress"],
             prepare=lambda ws, d: text_file(d / "in.txt", "caf\xe9 film\n".encode("latin-1"))))
    add(Case("predict-stdin-empty", lambda ws, d: ["predict", str(ws.model), "-", "--no-progress"], stdin=b"", expect="any"))
    add(Case("predict-stdin-blank-lines", lambda ws, d: ["predict", str(ws.model), "-", "--no-progress"], stdin=b"\n\n \n",
             expect="any"))
    add(Case("predict-runtime-bogus", lambda ws, d: ["predict", str(ws.model), "-", "--runtime", "tpu"], stdin=b"good\n"))
    add(Case("predict-batch-zero", lambda ws, d: ["predict", str(ws.model), "-", "--batch-size", "0"], stdin=b"good\n"))
    add(Case("predict-cache-dir-is-file", lambda ws, d: ["predict", str(ws.model), "-", "--runtime", "auto",
                                                         "--no-progress"], stdin=b"good\n", expect="any",
             env=lambda ws, d: {"GREENLM_CACHE_DIR": str(text_file(d / "cachefile", "x"))}, timeout=240))

    # -- compression commands
    add(Case("distill-student-zero", method("distill", "--student", "0x32"), check=no_path("out")))
    add(Case("distill-student-junk", method("distill", "--student", "big"), check=no_path("out")))
    add(Case("distill-temperature-zero", method("distill", "--student", "1x32", "--temperature", "0"), check=no_path("out")))
    add(Case("distill-augment-copies-neg", method("distill", "--student", "1x32", "--augment", "embedding",
                                                  "--augment-copies", "-1"), check=no_path("out")))
    add(Case("distill-layer-map-bogus", method("distill", "--student", "1x32", "--layer-map", "7,8,9"), check=no_path("out")))
    add(Case("distill-teacher-bad-header", method_on("distill", "--student", "1x32"), prepare=damage_safetensors_header,
             check=no_path("out")))
    add(Case("distill-teacher-onnx", lambda ws, d: ["distill", str(ws.onnx), "--task", str(ws.task), "--student", "1x32",
                                                    "--out", str(d / "out"), "--no-progress"], check=no_path("out")))
    add(Case("prune-heads-one", method("prune", "--head-sparsity", "1.0"), check=no_path("out")))
    add(Case("prune-heads-nan", method("prune", "--head-sparsity", "nan"), check=no_path("out")))
    add(Case("prune-sparsity-over", method("prune", "--method", "magnitude", "--sparsity", "1.5"), check=no_path("out")))
    add(Case("prune-method-bogus", method("prune", "--method", "random"), check=no_path("out")))
    add(Case("prune-drop-layers-all", method("prune", "--drop-layers", "2"), check=no_path("out")))
    add(Case("prune-iterations-zero", method("prune", "--schedule", "iterative", "--iterations", "0"), check=no_path("out")))
    add(Case("prune-config-only", method_on("prune"), prepare=config_only, check=no_path("out")))
    add(Case("quantize-scheme-int4", method("quantize", "--scheme", "int4"), check=no_path("out")))
    add(Case("quantize-calibration-zero", method("quantize", "--scheme", "int8-static", "--calibration-examples", "0"),
             check=no_path("out")))
    add(Case("quantize-tolerance-neg", method("quantize", "--tolerance", "-1"), check=no_path("out")))
    add(Case("quantize-threads-neg", method("quantize", "--threads", "-2"), check=no_path("out")))
    add(Case("quantize-other-format", method_on("quantize"), prepare=other_format, check=no_path("out")))
    add(Case("early-exit-layer-99", method("early-exit", "--exit-layers", "99"), check=no_path("out")))
    add(Case("early-exit-layer-zero", method("early-exit", "--exit-layers", "0"), check=no_path("out")))
    add(Case("early-exit-layers-words", method("early-exit", "--exit-layers", "one,two"), check=no_path("out")))
    add(Case("early-exit-threshold-two", method("early-exit", "--threshold", "2"), check=no_path("out")))
    add(Case("early-exit-patience-zero", method("early-exit", "--policy", "patience", "--patience", "0"),
             check=no_path("out")))
    add(Case("early-exit-heldout-one", method("early-exit", "--heldout-fraction", "1"), check=no_path("out")))
    add(Case("convert-attention-bogus", method("convert-attention", "--attention", "sparse"), check=no_path("out")))
    add(Case("convert-attention-features-zero", method("convert-attention", "--attention", "rfa:features=0"),
             check=no_path("out")))
    add(Case("convert-attention-features-huge", method("convert-attention", "--attention", "performer:features=99999999"),
             check=no_path("out")))
    add(Case("convert-attention-positions-zero", method("convert-attention", "--max-positions", "0"), check=no_path("out")))
    add(Case("convert-attention-alpha-nan", method("convert-attention", "--alpha", "nan"), check=no_path("out")))

    # -- export
    add(Case("export-opset-13", lambda ws, d: ["export", str(ws.model), "--out", str(d / "out"), "--opset", "13"],
             check=no_path("out")))
    add(Case("export-max-length-zero", lambda ws, d: ["export", str(ws.model), "--out", str(d / "out"), "--max-length", "0"],
             check=no_path("out")))
    add(Case("export-config-only", lambda ws, d: ["export", str(d / "m"), "--out", str(d / "out")], prepare=config_only,
             check=no_path("out")))
    add(Case("export-onnx-again", lambda ws, d: ["export", str(ws.onnx), "--out", str(d / "out")], check=no_path("out")))
    add(Case("export-out-is-file", lambda ws, d: ["export", str(ws.model), "--out", str(d / "out")],
             prepare=lambda ws, d: text_file(d / "out", "keep me"),
             check=lambda ws, d, r: None if (d / "out").read_text() == "keep me" else "the file at --out was replaced"))
    add(Case("export-task-broken", lambda ws, d: ["export", str(ws.model), "--out", str(d / "out"), "--task", str(d / "t")],
             prepare=binary_train, check=no_path("out")))

    # -- measure, calc, flops, ledger
    add(Case("measure-missing-command", measure("--", "no-such-program-here"), expect="code:127"))
    add(Case("measure-no-command", measure()))
    add(Case("measure-pue-nan", measure("--pue", "nan", "--", "true")))
    add(Case("measure-cpu-tdp-neg", measure("--cpu-tdp-w", "-5", "--", "true")))
    add(Case("measure-backend-bogus", measure("--backend", "psu", "--", "true")))
    add(Case("measure-intensity-dir", lambda ws, d: ["measure", "--no-ledger", "--region", "XX", "--intensity-csv", str(d),
                                                     "--", "true"]))
    add(Case("measure-intensity-truncated", lambda ws, d: ["measure", "--no-ledger", "--region", "XX", "--intensity-csv",
                                                           str(d / "int.csv"), "--", "true"], prepare=intensity_truncated,
             expect="any"))
    add(Case("measure-max-kwh-inf", measure("--max-kwh", "inf", "--", "true")))
    add(Case("measure-killed-child", measure("--", "sh", "-c", "kill -9 $$"), expect="code:137"))
    add(Case("measure-emissions-other-header", lambda ws, d: ["measure", "--no-ledger", "--emissions-csv",
                                                              str(d / "emissions.csv"), "--", "true"],
             prepare=emissions_other_header, expect="code:0",
             check=lambda ws, d, r: None if (d / "emissions.csv").read_text().startswith("a,b,c\n1,2,3\n")
             else "the existing emissions.csv was overwritten"))
    add(Case("measure-ledger-corrupt", lambda ws, d: ["measure", "--", "true"], prepare=corrupt_ledger, env=home_env,
             expect="code:0", check=measure_kept_record))
    add(Case("measure-env-pue-inf", measure("--", "true"), env={"GREENLM_PUE": "inf"}))
    add(Case("measure-env-usd-huge", measure("--", "true"), env={"GREENLM_USD_PER_HOUR": "1e999"}))
    add(Case("measure-env-region-junk", measure("--", "true"), env={"GREENLM_REGION": "\x1b[31mnowhere"}))
    add(Case("measure-env-tdp-junk", measure("--", "true"), env={"GREENLM_CPU_TDP_W": "lots"}))
    add(Case("measure-env-tdp-inf", measure("--", "true"), env={"GREENLM_CPU_TDP_W": "inf"}))
    add(Case("measure-env-settings-dir", measure("--", "true"), env=lambda ws, d: {"GREENLM_SETTINGS": str(d)}))
    add(Case("measure-env-settings-binary", measure("--", "true"),
             prepare=lambda ws, d: text_file(d / "s.toml", b"\xff\xfe\x00junk"),
             env=lambda ws, d: {"GREENLM_SETTINGS": str(d / "s.toml")}))
    add(Case("measure-settings-pue-overflow", measure("--", "true"), prepare=settings_file("pue = 1e400\n"), env=home_env))
    add(Case("measure-settings-ledger-number", lambda ws, d: ["measure", "--", "true"],
             prepare=settings_file("ledger = 5\n"), env=home_env))
    add(Case("measure-home-is-file", lambda ws, d: ["measure", "--", "true"], expect="code:0", check=measure_kept_record,
             env=lambda ws, d: {"GREENLM_HOME": str(text_file(d / "homefile", "x"))}))
    add(Case("calc-overflow", lambda ws, d: ["calc", "--hours", "1e200", "--watts", "1e200", "--pue", "1e200"]))
    add(Case("calc-hours-nan", lambda ws, d: ["calc", "--hours", "nan", "--watts", "100"]))
    add(Case("calc-gpus-neg", lambda ws, d: ["calc", "--hours", "1", "--gpu-watts", "300", "--gpus", "-2"]))
    add(Case("calc-intensity-neg", lambda ws, d: ["calc", "--hours", "1", "--watts", "100", "--intensity-g-per-kwh", "-5"]))
    add(Case("calc-instance-bogus", lambda ws, d: ["calc", "--hours", "1", "--watts", "100", "--instance", "aws:nope"]))
    add(Case("calc-watts-word", lambda ws, d: ["calc", "--hours", "1", "--watts", "many"]))
    add(Case("calc-hours-subnormal", lambda ws, d: ["calc", "--hours", "5e-324", "--watts", "100"], expect="any"))
    add(Case("flops-seq-zero", lambda ws, d: ["flops", str(ws.model), "--seq-len", "0"]))
    add(Case("flops-seq-huge", lambda ws, d: ["flops", str(ws.model), "--seq-len", str(10**18)]))
    add(Case("flops-train-steps-neg", lambda ws, d: ["flops", str(ws.model), "--seq-len", "16", "--train-steps", "-1",
                                                     "--batch-size", "8"]))
    add(Case("flops-config-list", lambda ws, d: ["flops", str(d / "config.json"), "--seq-len", "16"],
             prepare=lambda ws, d: text_file(d / "config.json", "[1, 2, 3]")))
    add(Case("flops-config-binary", lambda ws, d: ["flops", str(d / "config.json"), "--seq-len", "16"],
             prepare=lambda ws, d: text_file(d / "config.json", bytes(range(256)))))
    add(Case("flops-config-zero-heads", lambda ws, d: ["flops", str(d / "m"), "--seq-len", "16"],
             prepare=lambda ws, d: (copy_model(ws, d), text_file(d / "m" / "config.json", json.dumps(
                 {**json.loads((ws.model / "config.json").read_text()), "num_attention_heads": 0})))))
    add(Case("flops-num-labels-zero", lambda ws, d: ["flops", str(ws.model), "--seq-len", "16", "--num-labels", "0"]))
    add(Case("flops-electra-no-generator", lambda ws, d: ["flops", str(ws.model), "--seq-len", "16", "--pretraining",
                                                          "electra"]))
    add(Case("flops-onnx-file", lambda ws, d: ["flops", str(ws.onnx / "model.onnx"), "--seq-len", "16"]))
    add(Case("ledger-since-junk", lambda ws, d: ["ledger", "--since", "yesterday-ish"]))
    add(Case("ledger-since-huge-days", lambda ws, d: ["ledger", "--since", "99999999999d"]))
    add(Case("ledger-group-bogus", lambda ws, d: ["ledger", "--group-by", "colour"]))
    add(Case("ledger-is-dir", lambda ws, d: ["ledger", "--ledger", str(d)]))
    add(Case("ledger-corrupt", lambda ws, d: ["ledger"], prepare=corrupt_ledger, env=home_env))
    add(Case("ledger-postgres-refused", lambda ws, d: ["ledger", "--ledger", "postgresql://u@127.0.0.1:1/db"], timeout=60))
    add(Case("ledger-env-ledger-devnull", lambda ws, d: ["ledger"], env={"GREENLM_LEDGER": "/dev/null"}))

    # -- report, recipes, run, sweep
    add(Case("report-empty-dir", lambda ws, d: ["report", str(d)]))
    add(Case("report-a-file", lambda ws, d: ["report", str(text_file(d / "f.txt", "x"))]))
    add(Case("report-model-folder", lambda ws, d: ["report", str(ws.model)],
             check=lambda ws, d, r: None if not (ws.model / "report.md").exists() else "wrote report.md into a model folder"))
    add(Case("report-format-bogus", lambda ws, d: ["report", str(d / "runs" / "tiny"), "--format", "docx"],
             prepare=cached_run, timeout=300))
    add(Case("report-json-corrupt", lambda ws, d: ["report", str(d / "runs" / "tiny"), "--format", "md"],
             prepare=run_then(lambda r: text_file(r / "report.json", "{\"stages\": [")), expect="any", timeout=300))
    add(Case("report-stage-metrics-corrupt", lambda ws, d: ["report", str(d / "runs" / "tiny"), "--format", "md,html"],
             prepare=run_then(lambda r: text_file(r / "finetune" / "metrics.json", "[")), expect="any", timeout=300))
    add(Case("report-recipe-deleted", lambda ws, d: ["report", str(d / "runs" / "tiny"), "--format", "md"],
             prepare=run_then(lambda r: (r / "recipe.yaml").unlink()), expect="any", timeout=300))
    add(Case("report-out-is-file", lambda ws, d: ["report", str(d / "runs" / "tiny"), "--out", str(d / "o")],
             prepare=lambda ws, d: (cached_run(ws, d), text_file(d / "o", "keep")), timeout=300,
             check=lambda ws, d, r: None if (d / "o").read_text() == "keep" else "the file at --out was replaced"))
    add(Case("recipes-show-nosuch", lambda ws, d: ["recipes", "show", "quick2"]))
    add(Case("recipes-bogus-action", lambda ws, d: ["recipes", "delete", "quick"]))
    add(Case("recipes-show-path-traversal", lambda ws, d: ["recipes", "show", "../../../../etc/passwd"]))
    run = lambda *rest: (lambda ws, d: ["run", str(ws.recipe), "--runs-dir", str(d / "runs"), "--no-progress", *rest])  # noqa: E731
    add(Case("run-set-nan", run("--set", "stages.finetune.epochs=nan"), check=no_path("runs/tiny")))
    add(Case("run-set-no-equals", run("--set", "stages.finetune.epochs"), check=no_path("runs/tiny")))
    add(Case("run-set-yaml-bomb", run("--set", "stages.finetune.epochs=[[[[[[[[[[[[[[[[[[[["), check=no_path("runs/tiny")))
    add(Case("run-set-batch-zero", run("--set", "stages.finetune.batch_size=0"), check=no_path("runs/tiny")))
    add(Case("run-set-unknown-stage", run("--set", "stages.shrink.epochs=1"), check=no_path("runs/tiny")))
    add(Case("run-name-traversal", run("--name", "../escaped"),
             check=lambda ws, d, r: "wrote outside --runs-dir" if (d / "escaped").exists() else None))
    add(Case("run-name-empty", run("--name", ""), check=no_path("runs/tiny")))
    add(Case("run-name-slash", run("--name", "a/b"), check=no_path("runs/a")))
    add(Case("run-target-retained-150", run("--target-retained", "150"), check=no_path("runs/tiny")))
    add(Case("run-target-speedup-neg", run("--target-speedup", "-3"), check=no_path("runs/tiny")))
    add(Case("run-recipe-binary", lambda ws, d: ["run", str(text_file(d / "r.yaml", bytes(range(256)))),
                                                 "--runs-dir", str(d / "runs")]))
    add(Case("run-recipe-empty", lambda ws, d: ["run", str(text_file(d / "r.yaml", "")), "--runs-dir", str(d / "runs")]))
    add(Case("run-recipe-dir", lambda ws, d: ["run", str(d), "--runs-dir", str(d / "runs")]))
    add(Case("run-recipe-teacher-onnx", lambda ws, d: ["run", str(d / "r.yaml"), "--runs-dir", str(d / "runs"), "--no-progress"],
             prepare=lambda ws, d: text_file(d / "r.yaml", ws.recipe.read_text().replace(f"'{TINY}'", str(ws.onnx))),
             rerun=lambda ws, d: ["run", str(ws.recipe), "--runs-dir", str(d / "runs"), "--no-progress"], timeout=300))
    add(Case("run-start-within-no-grid", run("--start-within", "3h")))
    add(Case("run-grid-nan-series", lambda ws, d: ["run", str(ws.recipe), "--runs-dir", str(d / "runs"), "--pause-above",
                                                   "300", "--grid", str(d / "grid.csv"), "--grid-region", "XX"],
             prepare=series_variant("nan"), check=no_path("runs/tiny")))
    sweep = lambda *rest: (lambda ws, d: ["sweep", str(ws.recipe), "--runs-dir", str(d / "runs"), "--no-progress", *rest])  # noqa: E731
    add(Case("sweep-trials-zero", sweep("--trials", "0", "-s", "stages.finetune.learning_rate=loguniform(1e-4,1e-2)")))
    add(Case("sweep-search-junk", sweep("-s", "stages.finetune.learning_rate")))
    add(Case("sweep-search-log-neg", sweep("-s", "stages.finetune.learning_rate=loguniform(-1,1)")))
    add(Case("sweep-search-reversed", sweep("-s", "stages.finetune.epochs=int(5,1)")))
    add(Case("sweep-metric-bogus", sweep("--metric", "bleu", "-s", "stages.finetune.epochs=int(1,2)")))
    add(Case("sweep-storage-bogus", sweep("--storage", "redis://x", "-s", "stages.finetune.epochs=int(1,2)")))

    # -- tasks, data, datamap
    add(Case("tasks-check-empty-dir", lambda ws, d: ["tasks", "check", str(d), "--model", T]))
    add(Case("tasks-check-max-length-zero", lambda ws, d: ["tasks", "check", str(ws.task), "--model", T, "--max-length", "0"]))
    add(Case("tasks-check-hf-empty", lambda ws, d: ["tasks", "check", "hf:", "--model", T], timeout=60))
    add(Case("tasks-check-bom-csv", lambda ws, d: ["tasks", "check", str(d / "t"), "--model", T, "--json"],
             prepare=lambda ws, d: write_task(d / "t", ext="csv",
                                              train_text="\ufefftext,label\n" + "".join(f"{t},{y}\n" for t, y in toy_rows(160, 0)),
                                              dev_text="\ufefftext,label\n" + "".join(f"{t},{y}\n" for t, y in toy_rows(40, 1))),
             expect="accept"))
    add(Case("data-audit-examples-neg", lambda ws, d: ["data", "audit", "--task", str(ws.task), "--examples", "-1"]))
    add(Case("data-audit-max-length-zero", lambda ws, d: ["data", "audit", "--task", str(ws.task), "--model", T,
                                                          "--max-length", "0"]))
    add(Case("data-audit-crlf", lambda ws, d: ["data", "audit", "--task", str(d / "t"), "--json"], prepare=crlf_task,
             expect="accept", check=lambda ws, d, r: None if "\\r" not in r["stdout"] else "labels kept a carriage return"))
    add(Case("datamap-no-dynamics", lambda ws, d: ["datamap", str(ws.model), "--out", str(d / "out")], check=no_path("out")))
    add(Case("datamap-top-neg", lambda ws, d: ["datamap", str(ws.dyn_model), "--top", "-1", "--out", str(d / "out")],
             check=no_path("out")))
    add(Case("datamap-dynamics-corrupt", lambda ws, d: ["datamap", str(d / "m"), "--out", str(d / "out")],
             prepare=lambda ws, d: (copy_model(ws, d), text_file(d / "m" / "training_dynamics" / "epoch_0.jsonl", "{\"id\": ")),
             check=no_path("out")))

    # -- schedule
    sched = lambda *rest: (lambda ws, d: ["schedule", "--series", str(d / "grid.csv"), "--region", "XX", "--duration", "3h",  # noqa: E731
                                          "--within", "12h", "--now", "2024-03-15T00:00Z", *rest])
    for kind in ("nan", "negative", "duplicate", "empty", "header", "unsorted", "huge"):
        add(Case(f"schedule-series-{kind}", sched(), prepare=series_variant(kind),
                 expect="any" if kind in ("unsorted",) else "refuse"))
    add(Case("schedule-series-gap", sched(), prepare=series_variant("gap"), expect="any"))
    add(Case("schedule-duration-neg", lambda ws, d: ["schedule", "--series", str(ws.series), "--region", "XX",
                                                     "--duration", "-3h", "--within", "12h", "--now", "2024-03-15T00:00Z"]))
    add(Case("schedule-within-huge", lambda ws, d: ["schedule", "--series", str(ws.series), "--region", "XX",
                                                    "--duration", "3h", "--within", "99999999999999h",
                                                    "--now", "2024-03-15T00:00Z"]))
    add(Case("schedule-now-junk", lambda ws, d: ["schedule", "--series", str(ws.series), "--region", "XX",
                                                 "--duration", "3h", "--within", "12h", "--now", "2024-13-45T99:00Z"]))
    add(Case("schedule-energy-nan", lambda ws, d: ["schedule", "--series", str(ws.series), "--region", "XX",
                                                   "--duration", "3h", "--within", "12h", "--now", "2024-03-15T00:00Z",
                                                   "--energy-kwh", "nan"]))
    add(Case("schedule-pricetag-corrupt", lambda ws, d: ["schedule", "--series", str(ws.series), "--region", "XX",
                                                         "--within", "12h", "--now", "2024-03-15T00:00Z",
                                                         "--pricetag", str(text_file(d / "pricetag.json", "{\"wall_s\": "))]))
    add(Case("schedule-timezone-bogus", lambda ws, d: ["schedule", "--series", str(ws.series), "--region", "XX",
                                                       "--duration", "3h", "--within", "12h", "--now", "2024-03-15T00:00Z",
                                                       "--timezone", "Mars/Olympus"]))
    add(Case("schedule-simulate-durations-zero", lambda ws, d: ["schedule", "simulate", "--series", str(ws.series),
                                                                "--durations", "0", "--out", str(d / "out")],
             check=no_path("out")))
    add(Case("schedule-simulate-windows-junk", lambda ws, d: ["schedule", "simulate", "--series", str(ws.series),
                                                              "--windows", "six", "--out", str(d / "out")],
             check=no_path("out")))
    add(Case("schedule-exec-no-command", lambda ws, d: ["schedule", "exec", "--series", str(ws.series), "--region", "XX",
                                                        "--duration", "1h", "--within", "2h"]))

    # -- pretrain, env
    pre = lambda *rest: (lambda ws, d: ["pretrain", "--out", str(d / "out"), "--corpus", str(ws.corpus), "--model",  # noqa: E731
                                        "tiny:layers=1,hidden=32,heads=2,ffn=37,vocab=120", "--steps", "4", "--batch-size",
                                        "4", "--max-length", "16", "--eval-blocks", "4", "--no-progress", *rest])
    add(Case("pretrain-corpus-empty", lambda ws, d: pre("--corpus", str(text_file(d / "c.txt", "")))(ws, d),
             check=no_path("out")))
    add(Case("pretrain-corpus-binary", lambda ws, d: pre("--corpus", str(text_file(d / "c.txt", bytes(range(256)) * 8)))(ws, d),
             check=no_path("out")))
    add(Case("pretrain-corpus-fifo", lambda ws, d: pre("--corpus", str(d / "fifo"))(ws, d), prepare=fifo,
             check=no_path("out"), timeout=40))
    add(Case("pretrain-mask-rate-zero", pre("--mask-rate", "0"), check=no_path("out")))
    add(Case("pretrain-mask-rate-one", pre("--mask-rate", "1"), check=no_path("out")))
    add(Case("pretrain-steps-zero", pre("--steps", "0"), check=no_path("out")))
    add(Case("pretrain-vocab-one", pre("--vocab-size", "1"), check=no_path("out")))
    add(Case("pretrain-max-length-two", pre("--max-length", "2"), check=no_path("out")))
    add(Case("pretrain-objective-bogus", pre("--objective", "gpt"), check=no_path("out")))
    add(Case("pretrain-generator-fraction-zero", pre("--objective", "electra", "--generator-fraction", "0"),
             check=no_path("out")))
    add(Case("pretrain-flops-budget-inf", pre("--flops-budget", "inf"), check=no_path("out")))
    add(Case("pretrain-lr-inf", pre("--lr", "inf"), check=no_path("out")))
    add(Case("pretrain-checkpoint-every-neg", pre("--checkpoint-every", "-1"), check=no_path("out")))
    add(Case("env-junk-settings", lambda ws, d: ["env"], env={"GREENLM_PUE": "banana", "GREENLM_REGION": "???"},
             expect="any"))
    add(Case("env-json-home-missing", lambda ws, d: ["env", "--json"], env={"HOME": "/nonexistent/home"}, expect="accept"))
    add(Case("bench-batch-zero", lambda ws, d: ["bench", str(ws.model), "--task", str(ws.task), "--batch-sizes", "0"]))
    add(Case("bench-batch-words", lambda ws, d: ["bench", str(ws.model), "--task", str(ws.task), "--batch-sizes", "x"]))
    add(Case("bench-runtimes-bogus", lambda ws, d: ["bench", str(ws.model), "--task", str(ws.task), "--runtimes", "tpu"]))
    add(Case("bench-threads-neg", lambda ws, d: ["bench", str(ws.model), "--task", str(ws.task), "--threads", "-1"]))
    add(Case("bench-repeats-zero", lambda ws, d: ["bench", str(ws.model), "--task", str(ws.task), "--repeats", "0"]))
    add(Case("bench-seq-lens-neg", lambda ws, d: ["bench", "--seq-lens", "-8"]))
    add(Case("bench-shape-junk", lambda ws, d: ["bench", "--seq-lens", "16", "--bench-shape", "6xbig"]))
    add(Case("bench-max-examples-zero", lambda ws, d: ["bench", str(ws.model), "--task", str(ws.task),
                                                       "--max-examples", "0"]))
    add(Case("bench-model-config-only", lambda ws, d: ["bench", str(d / "m"), "--task", str(ws.task)], prepare=config_only,
             timeout=120))
    add(Case("bench-json-is-dir", lambda ws, d: ["bench", str(ws.model), "--task", str(ws.task), "--runtimes", "torch-fp32",
                                                 "--batch-sizes", "1", "--latency-examples", "2", "--repeats", "1",
                                                 "--rounds", "1", "--max-examples", "8", "--no-energy", "--json", str(d)],
             timeout=240))

    # -- the classes the first rerun found, tried on the other commands that share them
    for name, args in [("export", lambda ws, d: ["export", str(ws.model), "--out", ""]),
                       ("pretrain", lambda ws, d: pre()(ws, d)[:2] + [""] + pre()(ws, d)[3:]),
                       ("datamap", lambda ws, d: ["datamap", str(ws.dyn_model), "--out", "."]),
                       ("schedule-simulate", lambda ws, d: ["schedule", "simulate", "--series", str(ws.series),
                                                            "--durations", "1", "--windows", "6", "--out", ".."]),
                       ("quantize", lambda ws, d: ["quantize", str(ws.model), "--task", str(ws.task), "--out", "/"]),
                       ("bench-json", lambda ws, d: ["bench", str(ws.model), "--task", str(ws.task), "--json", "."])]:
        # schedule simulate's --out is a folder that receives files: '..' is a folder like any other
        add(Case(f"{name}-out-names-nothing", args, expect="any" if name == "schedule-simulate" else "refuse"))
    add(Case("sweep-name-empty", sweep("--name", "", "-s", "stages.finetune.epochs=int(1,2)")))
    for name, args in [("pretrain", lambda ws, d: pre()(ws, d)),
                       ("datamap", lambda ws, d: ["datamap", str(ws.dyn_model), "--out", str(d / "out")]),
                       ("quantize", method("quantize", "--no-measure-speed")),
                       ("schedule-simulate", lambda ws, d: ["schedule", "simulate", "--series", str(ws.series),
                                                            "--durations", "1", "--windows", "6", "--no-figure",
                                                            "--out", str(d / "out")])]:
        add(Case(f"{name}-out-is-file", args, prepare=lambda ws, d: text_file(d / "out", "keep me"),
                 check=lambda ws, d, r: None if (d / "out").is_file() and (d / "out").read_text() == "keep me"
                 else "the file at --out was replaced"))
    for cmd in ("prune", "early-exit", "convert-attention", "quantize"):
        add(Case(f"{cmd}-onnx-input", lambda ws, d, c=cmd: [c, str(ws.onnx), "--task", str(ws.task), "--out",
                                                             str(d / "out"), "--no-progress"], check=no_path("out")))
    add(Case("prune-teacher-dir-onnx", method("prune", "--recovery", "distill", "--teacher", "teacher", "--teacher-dir",
                                              "ONNX"), check=no_path("out")))
    cases[-1].args = (lambda f: lambda ws, d: [str(ws.onnx) if a == "ONNX" else a for a in f(ws, d)])(cases[-1].args)
    add(Case("eval-model-missing-layer", ev_model(), prepare=lambda ws, d: _drop_weight(ws, d, "encoder.layer.1.")))
    add(Case("train-tiny-positions-two", lambda ws, d: ["train", "--task", str(ws.task), "--model", "tiny:positions=2",
                                                        "--out", str(d / "out"), "--no-progress"], check=no_path("out")))
    add(Case("train-tiny-abc-k-huge", lambda ws, d: ["train", "--task", str(ws.task), "--model",
                                                     "tiny:attention=abc,k=999999999", "--out", str(d / "out"),
                                                     "--no-progress"], check=no_path("out")))
    add(Case("convert-attention-seed-neg", method("convert-attention", "--attention", "rfa:seed=-1"), check=no_path("out")))
    add(Case("tasks-check-json-label-names-long", lambda ws, d: ["tasks", "check", str(d / "task.json"), "--model", T],
             prepare=lambda ws, d: (write_task(d / "t"), text_file(d / "task.json", json.dumps(
                 {"train": str(d / "t" / "train.tsv"), "dev": str(d / "t" / "dev.tsv"),
                  "label_names": ["a", "b", "c"]})))))
    add(Case("run-recipe-bom", lambda ws, d: ["run", str(d / "r.yaml"), "--runs-dir", str(d / "runs"), "--no-progress"],
             prepare=lambda ws, d: text_file(d / "r.yaml", "\ufeff" + ws.recipe.read_text()), expect="accept",
             check=run_report_ok, timeout=300))
    add(Case("measure-settings-bom", measure("--region", "USA", "--", "true"), prepare=settings_file("\ufeffpue = 1.2\n"),
             env=home_env, expect="code:0",
             check=lambda ws, d, r: None if "1.2" in r["stderr"] else "the PUE of the settings file was not used"))
    add(Case("pretrain-corpus-bom", lambda ws, d: pre("--corpus", str(text_file(d / "c.txt", "\ufeff" + ws.corpus.read_text()))
                                                      )(ws, d), expect="accept", check=holds_model("out"), timeout=200))
    add(Case("eval-max-length-zero", ev("--max-length", "0")))
    add(Case("predict-max-length-zero", lambda ws, d: ["predict", str(ws.model), "-", "--max-length", "0"], stdin=b"good\n"))
    add(Case("bench-threads-zero", lambda ws, d: ["bench", str(ws.model), "--task", str(ws.task), "--threads", "0"]))
    add(Case("bench-seq-lens-huge", lambda ws, d: ["bench", "--seq-lens", "1000000000", "--bench-shape", "1x32",
                                                   "--attention", "softmax"], timeout=60))
    add(Case("bench-shape-huge", lambda ws, d: ["bench", "--seq-lens", "16", "--bench-shape", "48x1000000"], timeout=60))
    add(Case("distill-student-huge", method("distill", "--student", "2x9999999"), check=no_path("out"), timeout=60))
    add(Case("distill-augment-copies-huge", method("distill", "--student", "1x32", "--augment", "embedding",
                                                   "--augment-copies", "1000000000"), check=no_path("out"), timeout=60))
    add(Case("convert-attention-positions-huge", method("convert-attention", "--max-positions", "1000000000"),
             check=no_path("out"), timeout=60))
    add(Case("pretrain-vocab-huge", pre("--vocab-size", "1000000000"), check=no_path("out"), timeout=60))
    add(Case("pretrain-max-length-huge", pre("--max-length", "1000000000"), check=no_path("out"), timeout=60))
    add(Case("pretrain-batch-huge", pre("--batch-size", "1000000000"), check=no_path("out"), timeout=60))
    add(Case("eval-batch-huge", ev("--batch-size", "1000000000"), expect="any", timeout=60))
    add(Case("calc-cost-overflow", lambda ws, d: ["calc", "--hours", "1e300", "--watts", "1", "--usd-per-hour", "1e300"]))
    add(Case("ledger-since-other-digits", lambda ws, d: ["ledger", "--since", "\u0663d"], expect="any"))
    add(Case("datamap-point-number-huge", lambda ws, d: ["datamap", str(d / "m"), "--out", str(d / "out")],
             prepare=lambda ws, d: (copy_model(ws, d), text_file(d / "m" / "training_dynamics" /
                                                                 "dynamics_epoch_99999999999.jsonl", "")),
             check=no_path("out"), timeout=60))
    add(Case("train-task-is-tsv-file", lambda ws, d: train(ws, d, task=ws.task / "train.tsv"), check=no_path("out")))
    add(Case("train-task-hf-missing", lambda ws, d: train(ws, d, task="hf:no-such-dataset-here"), check=no_path("out"),
             timeout=60))
    add(Case("eval-task-other-labels", lambda ws, d: ["eval", str(ws.model), "--task", str(d / "t")],
             prepare=lambda ws, d: write_task(d / "t", train=[(t, "x" if y == "pos" else "y") for t, y in toy_rows(160, 0)],
                                              dev=[(t, "x" if y == "pos" else "y") for t, y in toy_rows(40, 1)])))
    add(Case("run-recipe-stages-list", lambda ws, d: ["run", str(d / "r.yaml"), "--runs-dir", str(d / "runs")],
             prepare=lambda ws, d: text_file(d / "r.yaml", ws.recipe.read_text().split("stages:")[0] +
                                             "stages:\n  - finetune\n  - distill\n"), check=no_path("runs/tiny")))
    add(Case("run-recipe-task-fifo", lambda ws, d: ["run", str(d / "r.yaml"), "--runs-dir", str(d / "runs")],
             prepare=lambda ws, d: (fifo(ws, d), text_file(d / "r.yaml", ws.recipe.read_text().replace(
                 f"task: {ws.task}", f"task: {d / 'fifo'}"))), check=no_path("runs/tiny"), timeout=40))
    add(Case("schedule-run-no-report", lambda ws, d: ["schedule", "--series", str(ws.series), "--region", "XX",
                                                      "--within", "12h", "--now", "2024-03-15T00:00Z", "--run", str(d)]))
    add(Case("schedule-pricetag-list", lambda ws, d: ["schedule", "--series", str(ws.series), "--region", "XX",
                                                      "--within", "12h", "--now", "2024-03-15T00:00Z", "--pricetag",
                                                      str(text_file(d / "p.json", "[1, 2]"))]))
    add(Case("measure-intensity-no-region", lambda ws, d: ["measure", "--no-ledger", "--intensity-csv", str(ws.series),
                                                           "--", "true"], expect="any"))
    add(Case("measure-out-names-nothing", measure("--out", "", "--", "true"), expect="any"))
    add(Case("global-quiet-and-verbose", lambda ws, d: ["--quiet", "--verbose", "env"]))

    # -- more wrong model folders and files, on the commands that had fewer cases
    add(Case("predict-model-bad-header", lambda ws, d: ["predict", str(d / "m"), "-", "--no-progress"], stdin=b"good\n",
             prepare=damage_safetensors_header))
    add(Case("predict-model-other-format", lambda ws, d: ["predict", str(d / "m"), "-", "--no-progress"],
             stdin=b"good\n", prepare=other_format))
    add(Case("bench-model-other-format", lambda ws, d: ["bench", str(d / "m"), "--task", str(ws.task), "--runtimes",
                                                        "torch-fp32", "--batch-sizes", "1", "--latency-examples", "2",
                                                        "--repeats", "1", "--rounds", "1", "--max-examples", "8"],
             prepare=other_format, timeout=150))
    add(Case("flops-model-other-format", lambda ws, d: ["flops", str(d / "m"), "--seq-len", "16"], prepare=other_format))
    add(Case("export-model-other-format", lambda ws, d: ["export", str(d / "m"), "--out", str(d / "out")],
             prepare=other_format, check=no_path("out")))
    add(Case("data-audit-task-binary", lambda ws, d: ["data", "audit", "--task", str(d / "t")], prepare=binary_train))
    add(Case("recipes-show-resolved-nosuch", lambda ws, d: ["recipes", "show", "nosuch", "--resolved"]))
    add(Case("tasks-check-csv-header-only", lambda ws, d: ["tasks", "check", str(d / "t"), "--model", T],
             prepare=lambda ws, d: write_task(d / "t", ext="csv", train_text="text,label\n", dev_text="text,label\n")))
    add(Case("eval-task-zero-row-dev", lambda ws, d: ["eval", str(ws.model), "--task", str(d / "t")], prepare=zero_row_dev))
    add(Case("measure-region-bogus", measure("--region", "Atlantis", "--", "true")))
    add(Case("schedule-region-missing", lambda ws, d: ["schedule", "--series", str(ws.series), "--region", "YY",
                                                       "--duration", "3h", "--within", "12h", "--now",
                                                       "2024-03-15T00:00Z"]))
    add(Case("env-settings-dir", lambda ws, d: ["env"], env=lambda ws, d: {"GREENLM_SETTINGS": str(d)}, expect="any"))

    # -- the same output written by two commands at once
    add(Case("train-concurrent-same-out", lambda ws, d: train(ws, d), kind="concurrent", expect="any",
             check=holds_model("out"), rerun=lambda ws, d: train(ws, d), timeout=200))
    add(Case("export-concurrent-same-out", lambda ws, d: ["export", str(ws.model), "--out", str(d / "out"), "--optimize",
                                                          "off"], kind="concurrent", expect="any",
             check=lambda ws, d, r: None if (d / "out" / "model.onnx").is_file() else "no model.onnx at --out",
             rerun=lambda ws, d: ["eval", str(d / "out"), "--task", str(ws.task), "--no-progress"], timeout=200))
    add(Case("measure-concurrent-same-csv", lambda ws, d: ["measure", "--emissions-csv", str(d / "emissions.csv"), "--",
                                                           sys.executable, "-c", "pass"], kind="concurrent", env=home_env,
             expect="code:0", check=lambda ws, d, r: emissions_rows(2)(ws, d, r) or ledger_rows(2)(ws, d, r)))
    add(Case("pretrain-concurrent-same-out", pre(), kind="concurrent", expect="any", check=holds_model("out"),
             rerun=pre(), timeout=200))
    add(Case("run-concurrent-same-folder", lambda ws, d: ["run", str(ws.recipe), "--runs-dir", str(d / "runs"),
                                                          "--no-progress"], kind="concurrent", expect="any",
             check=run_report_ok, rerun=lambda ws, d: ["run", str(ws.recipe), "--runs-dir", str(d / "runs"), "--no-progress"],
             timeout=400))
    add(Case("datamap-concurrent-same-out", lambda ws, d: ["datamap", str(ws.dyn_model), "--out", str(d / "out")],
             kind="concurrent", expect="any",
             check=lambda ws, d, r: None if (d / "out" / "datamap.html").is_file() else "no datamap.html at --out",
             timeout=200))
    add(Case("schedule-simulate-concurrent", lambda ws, d: ["schedule", "simulate", "--series", str(ws.series),
                                                            "--durations", "1,3", "--windows", "6", "--no-figure",
                                                            "--out", str(d / "out")], kind="concurrent", expect="any",
             check=lambda ws, d, r: None if (d / "out" / "schedule_simulation.json").is_file() else "no simulation json",
             timeout=200))

    # -- kill -9 mid-write, then the same command again
    add(Case("train-kill9-then-rerun", lambda ws, d: train(ws, d, "--epochs", "30", "--checkpoint-every", "5"),
             kind="kill9", kill_when=_checkpoint_step(".out.work", 10), expect="any",
             rerun=lambda ws, d: train(ws, d, "--epochs", "30", "--checkpoint-every", "5"), check=holds_model("out"),
             timeout=300))
    add(Case("distill-kill9-then-rerun", method("distill", "--student", "1x32", "--epochs", "20", "--checkpoint-every", "5"),
             kind="kill9", kill_when=_checkpoint_step(".out.work", 10), expect="any",
             rerun=method("distill", "--student", "1x32", "--epochs", "20", "--checkpoint-every", "5"),
             check=holds_model("out"), timeout=300))
    add(Case("export-kill9-then-rerun", lambda ws, d: ["export", str(ws.model), "--out", str(d / "out")], kind="kill9",
             kill_when=_after_seconds(6), expect="any",
             rerun=lambda ws, d: ["export", str(ws.model), "--out", str(d / "out")],
             check=lambda ws, d, r: None if (d / "out" / "model.onnx").is_file() else "no model.onnx", timeout=200))
    add(Case("pretrain-kill9-then-rerun", pre("--steps", "400", "--checkpoint-every", "20"), kind="kill9",
             kill_when=_checkpoint_step(".out.work", 40), expect="any", rerun=pre("--steps", "400", "--checkpoint-every", "20"),
             check=holds_model("out"), timeout=300))
    add(Case("report-kill9-then-rerun", lambda ws, d: ["report", str(d / "runs" / "tiny")], prepare=cached_run,
             kind="kill9", kill_when=_after_seconds(5), expect="any",
             rerun=lambda ws, d: ["report", str(d / "runs" / "tiny")], check=run_report_ok, timeout=300))
    add(Case("measure-kill9-then-ledger", lambda ws, d: ["measure", "--", "sleep", "30"], env=home_env, kind="kill9",
             kill_when=_after_seconds(3), expect="any", rerun=lambda ws, d: ["ledger"], timeout=60))
    add(Case("quantize-kill9-then-rerun", method("quantize", "--no-measure-speed"), kind="kill9",
             kill_when=_after_seconds(7), expect="any", rerun=method("quantize", "--no-measure-speed"),
             check=holds_model("out"), timeout=300))

    # -- read-only and full output file systems
    ro = "ro,size=64k"
    for name, args in [("train", lambda ws, d: train(ws, d)),
                       ("export", lambda ws, d: ["export", str(ws.model), "--out", str(d / "out" / "x")]),
                       ("pretrain", lambda ws, d: pre()(ws, d)[:2] + [str(d / "out" / "x")] + pre()(ws, d)[3:]),
                       ("datamap", lambda ws, d: ["datamap", str(ws.dyn_model), "--out", str(d / "out" / "x")]),
                       ("schedule-simulate", lambda ws, d: ["schedule", "simulate", "--series", str(ws.series),
                                                            "--durations", "1", "--windows", "6", "--out",
                                                            str(d / "out" / "x")]),
                       ("bench-json", lambda ws, d: ["bench", str(ws.model), "--task", str(ws.task), "--runtimes",
                                                     "torch-fp32", "--batch-sizes", "1", "--latency-examples", "2",
                                                     "--repeats", "1", "--rounds", "1", "--max-examples", "8",
                                                     "--no-energy", "--json", str(d / "out" / "b.json")]),
                       ("run", lambda ws, d: ["run", str(ws.recipe), "--runs-dir", str(d / "out"), "--no-progress"])]:
        add(Case(f"{name}-read-only-out", args, kind=f"mount:{ro}", timeout=240))
    add(Case("measure-read-only-home", lambda ws, d: ["measure", "--out", str(d / "out" / "tag.json"), "--", "true"],
             kind=f"mount:{ro}", expect="code:0", check=measure_kept_record,
             env=lambda ws, d: {"GREENLM_HOME": str(d / "out" / "home")}))
    for name, args in [("export", lambda ws, d: ["export", str(ws.model), "--out", str(d / "out" / "x")]),
                       ("train", lambda ws, d: train(ws, d)[:-3] + ["--out", str(d / "out" / "m"), "--no-progress"]),
                       ("report", lambda ws, d: ["report", str(d / "runs" / "tiny"), "--out", str(d / "out" / "r")]),
                       ("pretrain", lambda ws, d: pre()(ws, d)[:2] + [str(d / "out" / "x")] + pre()(ws, d)[3:])]:
        add(Case(f"{name}-full-disk", args, kind="mount:size=48k", needs_root=True, timeout=300, expect="any",
                 prepare=cached_run if name == "report" else None))
    return cases


# ---- running and judging ---------------------------------------------------------------------------------------


def _judge(case: Case, result: dict) -> tuple[str, str]:
    """(verdict, why): ok, traceback, hang, accepted, broken, unclear."""
    err = result["stderr"]
    if result["hung"]:
        return "hang", f"no end within {case.timeout:.0f} s"
    if TRACEBACK in err:
        tail = [line for line in err.strip().splitlines() if line.strip()][-1:]
        return "traceback", tail[0][:300] if tail else ""
    code = result["code"]
    lines = [line for line in err.splitlines() if line.startswith(ERROR_PREFIX)]
    if case.expect == "refuse":
        if code == 0:
            return "accepted", "exit 0"
        if code != 2 or len(lines) != 1:
            return "unclear", f"exit {code}, {len(lines)} error line(s): {err.strip()[-300:]}"
    elif case.expect == "accept" and code != 0:
        return "unclear", f"a good input refused: exit {code}: {err.strip()[-300:]}"
    elif case.expect == "any" and (code not in (0, 2) or (code == 2 and len(lines) != 1)):
        return "unclear", f"exit {code}, {len(lines)} error line(s): {err.strip()[-300:]}"
    elif case.expect.startswith("code:") and code != int(case.expect[5:]):
        return "unclear", f"exit {code}, expected {case.expect[5:]}: {err.strip()[-300:]}"
    return "ok", ""


def _popen(ws, args, d, env):
    return subprocess.Popen([sys.executable, "-m", "greenlm", *args], cwd=d, env=ws.env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def _collect(proc, timeout, started) -> dict:
    try:
        out, err = proc.communicate(timeout=max(1.0, timeout - (time.perf_counter() - started)))
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        hung = True
    return {"code": None if hung else proc.returncode, "stdout": out.decode("utf-8", "replace"),
            "stderr": err.decode("utf-8", "replace"), "hung": hung, "seconds": round(time.perf_counter() - started, 2)}


def run_case(ws: Workspace, case: Case, base: Path) -> dict:
    d = base / case.name
    d.mkdir(parents=True)
    env = case.env(ws, d) if callable(case.env) else dict(case.env or {})
    record = {"name": case.name, "command": case.command, "expect": case.expect, "kind": case.kind}
    try:
        with contextlib.ExitStack() as stack:
            if case.kind.startswith("mount:"):
                if case.needs_root and not IS_ROOT:
                    raise _Skip("a full disk needs a tmpfs mount, which needs root")
                stack.enter_context(mounted(d / "out", case.kind[6:]))
            if case.prepare is not None:
                case.prepare(ws, d)
            args = case.args(ws, d)
            record["argv"] = ["greenlm", *[str(a) for a in args]]
            started = time.perf_counter()
            if case.kind == "concurrent":
                procs = [_popen(ws, args, d, env) for _ in range(2)]
                results = [_collect(p, case.timeout, started) for p in procs]
                record["codes"] = [r["code"] for r in results]
                judged = [(_judge(case, r), r) for r in results]
                (verdict, why), result = next(((v, r) for v, r in judged if v[0] != "ok"), judged[0])
            elif case.kind == "kill9":
                proc = _popen(ws, args, d, env)
                deadline = time.time() + case.timeout / 2
                while proc.poll() is None and time.time() < deadline and not case.kill_when(ws, d):
                    time.sleep(0.1)
                finished_first = proc.poll() is not None
                if not finished_first:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                record["killed"] = not finished_first
                if finished_first:
                    record["note"] = "the command finished before the kill: this case tested a plain rerun only"
                result = greenlm(ws, case.rerun(ws, d), cwd=d, env=env, timeout=case.timeout)
                record["argv_rerun"] = ["greenlm", *case.rerun(ws, d)]
            else:
                result = greenlm(ws, args, cwd=d, env=env, timeout=case.timeout, stdin=case.stdin)
            if case.kind != "concurrent":
                verdict, why = _judge(case, result)
            if case.kind == "concurrent" and verdict == "ok" and not any(c == 0 for c in record["codes"]) \
                    and case.expect != "refuse":
                verdict, why = "broken", f"neither writer finished: exit codes {record['codes']}"
            if case.kind == "kill9" and verdict == "ok" and result["code"] != 0:
                verdict, why = "broken", f"the same command after kill -9 did not finish: {result['stderr'][-300:]}"
            if verdict == "ok" and case.kind.startswith("mount:") and case.check is None:
                problem = whole_or_nothing(ws, d, result)
                if problem:
                    verdict, why = "broken", problem
            if verdict == "ok" and case.kind.startswith("mount:size=") and result["code"] != 0:
                # the disk was full: give it room (remount larger) and run the same command; it must finish
                subprocess.run(["mount", "-o", "remount,size=256m", str(d / "out")], capture_output=True)
                again = greenlm(ws, args, cwd=d, env=env, timeout=case.timeout)
                record["code_with_room"] = again["code"]
                if again["code"] != 0 or TRACEBACK in again["stderr"]:
                    verdict, why = "broken", f"with room again, the same command failed: {again['stderr'][-300:]}"
            if verdict == "ok" and case.check is not None:
                problem = case.check(ws, d, result)
                if problem:
                    verdict, why = "broken", problem
            if verdict == "ok" and case.rerun is not None and case.kind != "kill9":
                again = greenlm(ws, case.rerun(ws, d), cwd=d, env=env, timeout=case.timeout)
                if again["code"] != 0 or TRACEBACK in again["stderr"]:
                    verdict, why = "broken", f"the corrected command then failed: {again['stderr'][-300:]}"
    except _Skip as skip:
        record.update(verdict="skipped", why=str(skip))
        return record
    record.update(verdict=verdict, why=why, code=result["code"], seconds=result["seconds"],
                  traceback=TRACEBACK in result["stderr"], hung=result["hung"],
                  stderr_tail=result["stderr"][-600:])
    return record


SUMMARY_COLUMNS = ("cases", "ok", "traceback", "hang", "accepted", "broken", "unclear", "skipped")


def summarize(records: list[dict]) -> dict:
    by_command: dict[str, dict] = {}
    for r in records:
        row = by_command.setdefault(r["command"], dict.fromkeys(SUMMARY_COLUMNS, 0))
        row["cases"] += 1
        row[r["verdict"]] += 1
    total = dict.fromkeys(SUMMARY_COLUMNS, 0)
    for row in by_command.values():
        for k in SUMMARY_COLUMNS:
            total[k] += row[k]
    return {"by_command": dict(sorted(by_command.items())), "total": total}


def table(summary: dict) -> str:
    head = "| command | " + " | ".join(SUMMARY_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(SUMMARY_COLUMNS) + 1)]
    for command, row in [*summary["by_command"].items(), ("**all**", summary["total"])]:
        lines.append(f"| {command} | " + " | ".join(str(row[k]) for k in SUMMARY_COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="Run only the cases whose name contains this (repeatable).")
    parser.add_argument("--list", action="store_true", help="List the cases and exit.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder (its path is printed).")
    parser.add_argument("--doc", action="store_true", help="Write this benchmark's section of docs/benchmarks.md.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="The JSON of every case.")
    options = parser.parse_args()
    cases = build_cases()
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    if options.only:
        cases = [c for c in cases if any(part in c.name for part in options.only)]
    if options.list:
        print("\n".join(f"{c.name:45s} {c.expect:8s} {c.kind}" for c in cases))
        print(f"{len(cases)} cases")
        return
    root = Path(tempfile.mkdtemp(prefix="greenlm-hostile-"))
    started = time.perf_counter()
    try:
        print(f"workspace {root}: training the tiny model...", flush=True)
        ws = build_workspace(root)
        records = []
        for i, case in enumerate(cases, 1):
            record = run_case(ws, case, root / "cases")
            records.append(record)
            mark = "" if record["verdict"] == "ok" else f"  <-- {record['verdict']}: {record.get('why', '')[:160]}"
            print(f"[{i:3d}/{len(cases)}] {case.name:45s} exit {record.get('code')!s:5s} "
                  f"{record.get('seconds', 0):6.1f} s{mark}", flush=True)
    finally:
        if not options.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    elapsed = time.perf_counter() - started
    summary = summarize(records)
    print()
    print(table(summary))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT / "src"))
    from _doc import machine_line

    machine = machine_line()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps({"date": stamp, "machine": machine, "elapsed_s": round(elapsed, 1),
                                       "summary": summary, "cases": records}, indent=1) + "\n")
    print(f"\n{len(records)} cases in {elapsed / 60:.1f} min; every case in {options.out}")
    if options.doc and not options.only:
        from _doc import write_section

        total = summary["total"]
        body = (f"`python benchmarks/hostile_cli.py` ({stamp}; {machine}): {total['cases']} hostile cases over "
                f"{len(summary['by_command'])} commands in {elapsed / 60:.1f} min, chosen to differ from the cases of "
                f"greenlm's tests (the regression tests of the classes they found, tests/test_hardening_more.py, "
                f"came after). "
                f"**{total['traceback']} tracebacks, {total['hang']} hangs, {total['accepted']} bad inputs accepted, "
                f"{total['broken']} folders or records lost or broken**, {total['unclear']} unclear refusals, "
                f"{total['skipped']} skipped.\n\n{table(summary)}\n\nEvery case, its command line and stderr: "
                f"`benchmarks/results/hostile_cli.json`.")
        write_section("Hostile rerun (issue 19)", body)


if __name__ == "__main__":
    main()
