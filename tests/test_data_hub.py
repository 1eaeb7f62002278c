"""Hugging Face datasets specs: parsing, split mapping and labels through a fake ``datasets`` module, and
clean one-line errors when the package is missing or the Hub cannot be reached. Nothing touches the network."""

from __future__ import annotations

import sys
import types

import pytest

from greenlm.common import GreenlmError
from greenlm.data import load_task
from greenlm.data.hub import looks_like_hub_name, parse_hub_spec


class FakeClassLabel:
    def __init__(self, names):
        self.names = list(names)


class FakeValue:
    pass


class FakeSplit:
    """The parts of ``datasets.Dataset`` greenlm uses: column_names, features, ds[column], len()."""

    def __init__(self, columns: dict, features: dict | None = None):
        self._columns = columns
        self.column_names = list(columns)
        self.features = features or {name: FakeValue() for name in columns}

    def __getitem__(self, column):
        return iter(self._columns[column])  # like a lazy Column: only iteration is promised

    def __len__(self):
        return len(next(iter(self._columns.values())))


def install_fake_datasets(monkeypatch, result=None, error: Exception | None = None) -> list:
    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        if error is not None:
            raise error
        return result

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


SENTIMENT = FakeClassLabel(["negative", "positive"])


def glue_sst2():
    features = {"sentence": FakeValue(), "label": SENTIMENT, "idx": FakeValue()}
    return {
        "train": FakeSplit({"sentence": ["good .", "bad .", "fine ."], "label": [1, 0, 1], "idx": [0, 1, 2]}, features),
        "validation": FakeSplit({"sentence": ["nice .", "dull ."], "label": [1, 0], "idx": [0, 1]}, features),
        "test": FakeSplit({"sentence": ["what ?"], "label": [-1], "idx": [0]}, features),  # GLUE: unlabeled
    }


def test_spec_parsing():
    assert parse_hub_spec("glue/sst2") == ("nyu-mll/glue", "sst2")
    assert parse_hub_spec("hf:glue/rte") == ("nyu-mll/glue", "rte")
    assert parse_hub_spec("hf:imdb") == ("imdb", None)
    assert parse_hub_spec("hf:stanfordnlp/imdb") == ("stanfordnlp/imdb", None)
    assert parse_hub_spec("hf:nyu-mll/glue:mnli") == ("nyu-mll/glue", "mnli")
    with pytest.raises(GreenlmError, match="not a Hugging Face dataset name"):
        parse_hub_spec("hf:a/b/c")
    assert looks_like_hub_name("glue/sst2") and looks_like_hub_name("hf:imdb")
    assert not looks_like_hub_name("sst2") and not looks_like_hub_name("a/b/c")
    assert not looks_like_hub_name("data/train.tsv") and not looks_like_hub_name("conf/task.yaml")


def test_glue_mapping_with_fake_loader(monkeypatch):
    calls = install_fake_datasets(monkeypatch, result=glue_sst2())
    task = load_task("glue/sst2")
    assert calls == [("nyu-mll/glue", "sst2", {})]  # no trust_remote_code, no other options
    assert sorted(task.splits) == ["dev", "train"]  # validation -> dev; the unlabeled test split is dropped
    assert task.labels == ("negative", "positive")  # ClassLabel names, in ClassLabel order
    assert task.text_fields == ("sentence",)
    assert task.split("train").text_a == ["good .", "bad .", "fine ."]
    assert task.split("train").labels == [1, 0, 1]
    assert task.split("dev").labels == [1, 0]
    assert task.source == "hf:nyu-mll/glue:sst2"
    assert "nyu-mll/glue" in task.credit
    assert "/" not in task.name


def test_pair_columns_and_string_labels(monkeypatch):
    data = {
        "train": FakeSplit({"premise": ["a", "b"], "hypothesis": ["c", "d"], "label": ["yes", "no"]}),
        "validation": FakeSplit({"premise": ["e"], "hypothesis": ["f"], "label": ["no"]}),
        "test": FakeSplit({"premise": ["g"], "hypothesis": ["h"], "label": ["yes"]}),
    }
    install_fake_datasets(monkeypatch, result=data)
    task = load_task("hf:someone/nli")
    assert task.text_fields == ("premise", "hypothesis")
    assert task.labels == ("no", "yes")
    assert task.split("train").text_b == ["c", "d"]
    assert task.split("test").labels == [1]


def test_no_validation_split_keeps_test_as_test_and_reports_on_it(monkeypatch):
    features = {"text": FakeValue(), "label": FakeClassLabel(["neg", "pos"])}
    data = {
        "train": FakeSplit({"text": ["good", "bad"], "label": [1, 0]}, features),
        "test": FakeSplit({"text": ["ok", "meh"], "label": [1, 0]}, features),
        "unsupervised": FakeSplit({"text": ["x"], "label": [-1]}, features),
    }
    install_fake_datasets(monkeypatch, result=data)
    task = load_task("hf:imdb")
    assert sorted(task.splits) == ["test", "train"]  # not renamed: figures name the split they come from
    assert task.split("test").text_a == ["ok", "meh"]
    assert task.eval_split == "test"


def test_hub_column_errors_name_the_split(monkeypatch):
    data = {
        "train": FakeSplit({"body": ["a", "b"], "label": [0, 1]}),
        "validation": FakeSplit({"body": ["c"], "label": [0]}),
    }
    install_fake_datasets(monkeypatch, result=data)
    with pytest.raises(GreenlmError, match=r"hf:owner/thing \[train\]: no text column found among the columns body, label"):
        load_task("hf:owner/thing")
    assert load_task("hf:owner/thing", text_fields=["body"]).labels == ("0", "1")


def test_missing_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(GreenlmError, match=r"datasets is not installed .*'hf:imdb'.* pip install 'greenlm\[hub\]'$"):
        load_task("hf:imdb")
    with pytest.raises(GreenlmError, match=r"'mydata/sst' .* no local folder or file .* pip install 'greenlm\[hub\]'"):
        load_task("mydata/sst")


def test_offline_failure_is_one_clean_line(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    error = ConnectionError("Couldn't reach 'imdb' on the Hub (LocalEntryNotFoundError)\nmore detail")
    install_fake_datasets(monkeypatch, error=error)
    with pytest.raises(GreenlmError) as err:
        load_task("hf:imdb")
    message = str(err.value)
    assert "\n" not in message
    assert "could not load Hugging Face dataset 'hf:imdb'" in message
    assert "ConnectionError: Couldn't reach 'imdb' on the Hub" in message
    assert "offline mode is on" in message
    assert "more detail" not in message


def test_online_failure_for_unprefixed_name_mentions_local_paths(monkeypatch):
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    install_fake_datasets(monkeypatch, error=FileNotFoundError("Dataset 'someone/missing' doesn't exist on the Hub"))
    with pytest.raises(GreenlmError, match=r"there is no local folder or file 'someone/missing' either; check the name"):
        load_task("someone/missing")


def test_real_datasets_offline_is_clean(tmp_path):
    """With the real package (when installed): offline and uncached gives one clean GreenlmError."""
    pytest.importorskip("datasets")
    import subprocess

    code = (
        "from greenlm.common import GreenlmError\n"
        "from greenlm.data import load_task\n"
        "try:\n"
        "    load_task('hf:greenlm-test/does-not-exist')\n"
        "except GreenlmError as err:\n"
        "    print('GREENLM:', err)\n"
    )
    env = {
        **__import__("os").environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stdout.strip()
    assert line.startswith("GREENLM: could not load Hugging Face dataset") and "offline mode is on" in line
    assert "\n" not in line


def test_real_dataset_objects_through_the_mapping(monkeypatch):
    """Real ``datasets`` objects (lazy columns, ClassLabel features) when the package is installed."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    try:
        data = datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_dict({"sentence": ["good", "bad", ""], "label": [1, 0, 1]}, features=features),
                "validation": datasets.Dataset.from_dict({"sentence": ["fine"], "label": [1]}, features=features),
                "test": datasets.Dataset.from_dict({"sentence": ["?"], "label": [-1]}, features=features),
            }
        )
    except Exception as err:  # e.g. a pyarrow/dill combination datasets does not support
        pytest.skip(f"datasets is installed but cannot build a Dataset here: {type(err).__name__}")
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, **kw: data)
    task = load_task("glue/sst2")
    assert task.labels == ("neg", "pos")
    assert task.split("train").text_a == ["good", "bad"] and task.skipped_rows == {"train": 1}
    assert sorted(task.splits) == ["dev", "train"]
