"""The text data module on the reviews in tests/data/reviews: loading, tokenizing, batching, bad data, and
raw-text `predict` with the tokenizer the checkpoint carries."""

from __future__ import annotations

import csv
import socket
import time
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, REVIEWS, fast_on

from {{ cookiecutter.__package }} import ConfigError
from {{ cookiecutter.__package }}.data.text import TextDataModule
from {{ cookiecutter.__package }}.runs import run_dir

TEXT_TASKS = [config.stem for config in CONFIGS if "TextDataModule" in config.read_text()]
OTHER_TASKS = [config.stem for config in CONFIGS if config.stem not in TEXT_TASKS]


def assert_padding_changes_nothing(model: torch.nn.Module) -> None:
    """A review scores the same alone and padded with [PAD] to a longer batch: the model ignores padding."""
    model.eval()
    review = torch.tensor([[5, 9, 23, 7]])
    padded = torch.cat([review, torch.zeros(1, 6, dtype=torch.long)], dim=1)
    with torch.no_grad():
        alone, in_batch = model(review, torch.tensor([4])), model(padded, torch.tensor([4]))
        assert alone.shape == (1, 2) and model(*model.example_input_array).shape == (1, 2)
    torch.testing.assert_close(alone, in_batch)


def fitted(**kwargs) -> TextDataModule:
    data = TextDataModule(**{"dataset": str(REVIEWS), "batch_size": 16, "vocab_size": 200, **kwargs})
    data.prepare_data()
    data.setup("fit")
    return data


def write_csv(path: Path, rows: list[tuple]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    with (path / "train.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


def test_local_files_load_and_a_seeded_share_of_train_becomes_validation():
    data = fitted()
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (144, 16, 40)  # no validation.csv
    assert fitted().val_set == data.val_set
    assert fitted(seed=1).val_set != data.val_set
    assert any("\n" in text for text, _ in data.train_set + data.val_set), "a quoted multi-line review was split"


def test_files_by_split_load_too_and_must_share_one_known_format(tmp_path):
    files = {"train": str(REVIEWS / "train.csv"), "test": str(REVIEWS / "test.csv")}
    data = fitted(dataset=None, data_files=files)
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (144, 16, 40)
    with pytest.raises(ConfigError, match="data_files must all be one of"):
        fitted(dataset=None, data_files={**files, "test": str(tmp_path / "test.txt")})


def test_batches_are_padded_to_their_longest_text_and_carry_lengths():
    ids, lengths, labels = next(iter(fitted().train_dataloader()))
    assert ids.shape == (16, lengths.max()) and ids.dtype == lengths.dtype == labels.dtype == torch.long
    real = torch.arange(ids.shape[1]) < lengths.unsqueeze(1)
    assert (ids[~real] == 0).all() and (ids[real] != 0).all()  # [PAD] = 0 exactly where the text has ended
    assert set(labels.tolist()) <= {0, 1}


def test_a_text_past_max_length_is_cut_and_unknown_words_become_unk():
    ids, lengths = fitted(max_length=12).codec.tokenize(["wonderful " * 1000, "qwxz blorf"])
    assert ids.shape == (2, 12) and lengths.tolist() == [12, 2]
    assert ids[1, :2].tolist() == [1, 1]  # [UNK]


def test_labels_may_be_given_by_name(tmp_path):
    folder = write_csv(tmp_path, [("Superb.", "pos"), ("Awful.", "neg")] * 10)
    data = fitted(dataset=str(folder), labels=("neg", "pos"))
    assert sorted(label for _, label in data.train_set + data.val_set) == [0] * 10 + [1] * 10


@pytest.mark.parametrize(("label", "shown"), [("pos", "'pos'"), ("2", "2"), ("0.5", "0.5")])
def test_labels_that_are_not_class_indices_are_refused(tmp_path, label, shown):
    folder = write_csv(tmp_path, [("Superb.", label), ("Awful.", "0")] * 5)
    with pytest.raises(ConfigError, match=f"has label {shown} in column 'label'.*indices 0..1"):
        fitted(dataset=str(folder))


def test_a_missing_column_is_named_with_the_columns_there_are():
    with pytest.raises(ConfigError, match=r"no column 'review'; its columns are \['text', 'label'\]"):
        fitted(text_column="review")


def test_rows_without_text_are_dropped_with_a_warning(tmp_path):
    folder = write_csv(tmp_path, [("Superb.", 1), ("  ", 0), ("Awful.", 0)] * 4)
    with pytest.warns(UserWarning, match="dropped 4 rows with an empty 'text'"):
        data = fitted(dataset=str(folder))
    assert len(data.train_set) + len(data.val_set) == 8


def test_bad_data_exits_2_before_training(run_cli, workdir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", TEXT_TASKS[0], "--data.label_column", "stars")
    assert exit_info.value.code == 2
    assert "no column 'stars'" in capsys.readouterr().err
    assert not list(workdir.glob("runs/**/*.ckpt"))


@pytest.mark.parametrize("task", fast_on("sentiment_rnn", "bert_finetune", among=TEXT_TASKS))  # both tokenizer kinds
def test_predict_reads_raw_text_with_the_tokenizer_from_the_checkpoint(run_cli, workdir, capsys, task):
    trained = run_cli("fit", task, "--trainer.max_epochs", "2").datamodule.codec
    (best,) = workdir.glob("runs/**/best.ckpt")
    texts = ["A wonderful, moving film.", "Dull and pointless!", "ᚠᛇᚻ ᛒᛦᚦ"]  # --text, then --text_file's lines
    (workdir / "texts.txt").write_text("\n".join(texts[1:]) + "\n\n")
    with pytest.warns(UserWarning, match="text 3 to predict has no word the tokenizer knows"):
        cli = run_cli("predict", task, "--ckpt_path", str(best), "--text_file", "texts.txt", "--text", texts[0])

    # predict trained no tokenizer of its own (setup skips the data for raw text): this one is the checkpoint's.
    assert cli.datamodule.codec.tokenizer == trained.tokenizer
    with (run_dir(cli.trainer) / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["text"] for row in rows] == texts
    model = cli.model.eval()
    probabilities = model(*cli.datamodule.codec.tokenize(texts)).softmax(dim=-1).max(dim=-1).values
    for row, probability in zip(rows, probabilities.tolist(), strict=True):
        assert row["label"] == ["negative", "positive"][int(row["prediction"])]
        assert float(row["probability"]) == pytest.approx(probability, abs=1e-5)
    printed = capsys.readouterr().out
    assert all(f"{row['label']:<12}" in printed and row["text"] in printed for row in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "--ckpt_path", "none", "--text", "Fine.", "--text", " "], "text 2 to predict is empty"),
        (["predict", "--ckpt_path", "none", "--text_file", "missing.txt"], "--text_file missing.txt: no such file"),
        (["fit", "--text", "Fine."], "--text is for `predict`"),
    ],
)
def test_bad_text_options_exit_2_and_leave_no_run_folder(run_cli, workdir, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(args[0], TEXT_TASKS[0], *args[1:])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(workdir.glob("runs/*/version_*")), "the logger's run folder outlived the refusal"


@pytest.mark.skipif(not OTHER_TASKS, reason="every task in this project reads text")
def test_text_option_on_a_task_without_text_exits_2(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("predict", OTHER_TASKS[0], "--ckpt_path", "none", "--text", "Fine.")
    assert exit_info.value.code == 2
    assert "does not read text" in capsys.readouterr().err


@pytest.mark.parametrize("task", TEXT_TASKS)
def test_an_unreachable_hub_is_found_once_and_quickly_and_said_in_one_line(workdir, monkeypatch, capsys, task):
    """No network: the libraries would retry for most of a minute before failing; the Hub is checked once, offline
    mode switched on and said, and what the cache lacks is one line. (A closed local port stands for the Hub.)"""
    from huggingface_hub import constants

    from {{ cookiecutter.__package }}.cli import run
    from {{ cookiecutter.__package }}.hub import hub_reachable

    with socket.socket() as closed:  # bound, never listening: a connection to it is refused at once
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # go_offline sets it; monkeypatch restores the rest
        hub_reachable.cache_clear()
        started = time.monotonic()
        with pytest.raises(SystemExit) as exit_info:
            run(["fit", "--config", str(CONFIGS[0].parent / f"{task}.yaml"), "--data.dataset", "nobody/absent"])
        elapsed = time.monotonic() - started
    hub_reachable.cache_clear()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert exit_info.value.code == 2 and len(errors) == 1 and "Offline, " in errors[0]  # the dataset, or BERT's
    assert err.count("note: the Hugging Face Hub") == 1 and "Traceback" not in err and "Retrying" not in err
    assert elapsed < 20, f"{elapsed:.0f} s to say the Hub cannot be reached"
