"""BERT fine-tuning, on a tiny BERT saved in a folder as from_pretrained reads it: the pretrained weights are read
when fit starts and only then, a model that cannot be had is one clear line, the export reads texts of any length,
and the server pads each micro-batch to its own longest text."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnxruntime
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertModel

from {{ cookiecutter.__package }}.artifacts import load_checkpoint
from {{ cookiecutter.__package }}.data.text import TextCodec, pretrained_tokenizer
from {{ cookiecutter.__package }}.tasks.bert_finetune import BertClassifier


def test_the_pretrained_weights_are_read_when_fit_starts_and_not_before(tiny_bert):
    model = BertClassifier(num_classes=2, pretrained=str(tiny_bert))
    saved = load_file(tiny_bert / "model.safetensors")
    name = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(model.model.state_dict()[name], saved[name])  # built from the configuration alone
    model.setup("fit")
    assert torch.equal(model.model.state_dict()[name], saved[name])


def test_a_model_that_cannot_be_had_is_one_line_that_says_what_to_do(run_cli, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network either way: the message must name the way out
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "bert_finetune", "--model.pretrained", "no-such-org/no-such-bert")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--model.pretrained no-such-org/no-such-bert" in error and "save_pretrained" in error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_a_trained_model_rebuilds_without_the_pretrained_folder(trained, tiny_bert, tmp_path):
    checkpoint = trained("bert_finetune")
    moved = tmp_path / "elsewhere"
    tiny_bert.rename(moved)  # the Hub name or folder is gone: the checkpoint carries the architecture
    try:
        loaded = load_checkpoint(checkpoint)
        ids, lengths = loaded.codec.example_inputs()
        assert loaded.model(ids, lengths).shape == (2, 2)
    finally:
        moved.rename(tiny_bert)


def test_the_export_reads_texts_of_any_length(trained, exported):
    checkpoint, folder = load_checkpoint(trained("bert_finetune")), exported("bert_finetune")
    metadata = json.loads((folder / "metadata.json").read_text())
    assert [spec["shape"] for spec in metadata["inputs"]] == [["batch", "length"], ["batch"]]
    ids, lengths = checkpoint.codec.tokenize(["A gem.", "Dull, dull and far too long for what it has to say."])
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (probability,) = session.run(["probability"], {"token_ids": ids.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        expected = checkpoint.model.predict(ids, lengths)["probability"]
    assert ids.shape[1] < checkpoint.codec.max_length  # shorter than the example the graph was traced on
    np.testing.assert_allclose(probability, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_a_micro_batch_is_padded_to_its_own_longest_text(tiny_bert):
    tokenizer = pretrained_tokenizer(str(tiny_bert), max_length=64)
    codec = TextCodec(tokenizer=tokenizer.to_str(), max_length=64, labels=["negative", "positive"])
    short, long = codec.encode(["Fine."]), codec.encode(["A long, winding and wonderful film, warm and funny."])
    ids, lengths = codec.concatenate([short, long])
    assert ids.shape == (2, long[0].shape[1]) and long[0].shape[1] < 64
    assert lengths.tolist() == [short[1].item(), long[1].item()]
    assert (ids[0, short[1].item() :] == codec.pad_id).all()


@pytest.mark.parametrize("option", [["--model.pooling", "mean"], ["--model.gradient_checkpointing", "true"]])
def test_mean_pooling_and_gradient_checkpointing_train(run_cli, option):
    cli = run_cli("fit", "bert_finetune", "--trainer.fast_dev_run", "true", *option)
    assert torch.isfinite(cli.trainer.callback_metrics["train_loss"])


def test_learns_the_test_reviews(run_cli):
    run_cli(
        "fit", "bert_finetune", "--trainer.max_epochs", "8", "--model.lr", "0.002"
    )  # a tiny BERT from random weights
    tested = run_cli("test", "bert_finetune", "--ckpt_path", "best").trainer
    assert tested.callback_metrics["test_acc"] >= 0.9


def test_the_new_head_is_no_news_and_a_body_that_does_not_load_is_one_line(tiny_bert, tmp_path, capsys):
    """transformers reports the head's weights as MISSING, which fine-tuning wants; a body weight that is missing
    is worth one line."""
    body = tmp_path / "body"  # BERT without a head, as google-bert/bert-base-uncased is published
    BertModel.from_pretrained(tiny_bert).save_pretrained(body)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("transformers.modeling_utils").addHandler(handler)
    try:
        BertClassifier(num_classes=2, pretrained=str(body)).setup("fit")
        assert not records and "note:" not in capsys.readouterr().err
        weights = load_file(body / "model.safetensors")
        save_file({name: w for name, w in weights.items() if ".layer.1." not in name}, body / "model.safetensors")
        BertClassifier(num_classes=2, pretrained=str(body)).setup("fit")
    finally:
        logging.getLogger("transformers.modeling_utils").removeHandler(handler)
    assert not records
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "16 weights of the body did not load" in notes[0] and "bert.encoder.layer.1." in notes[0]
