"""BERT fine-tuning, on a tiny BERT saved in a folder as from_pretrained reads it: the pretrained weights are read
when fit starts and only then, a model that cannot be had is one clear line, the export reads texts of any length,
and the server pads each micro-batch to its own longest text; LoRA trains its adapters and the head alone, beside
the pretrained weights, and export and serving see the merged, ordinary model."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel

from {{ cookiecutter.__package }}.artifacts import load, load_checkpoint
from {{ cookiecutter.__package }}.data.text import TextCodec, pretrained_tokenizer
from {{ cookiecutter.__package }}.export import export
from {{ cookiecutter.__package }}.tasks.bert_finetune import BertClassifier


def test_the_pretrained_weights_are_read_when_fit_starts_and_not_before(tiny_bert):
    model = BertClassifier(num_classes=2, pretrained=str(tiny_bert))
    saved = load_file(tiny_bert / "model.safetensors")
    name = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(model.model.state_dict()[name], saved[name])  # built from the configuration alone
    model.setup("fit")
    assert torch.equal(model.model.state_dict()[name], saved[name])
    assert all(module.training for module in model.modules())  # dropout on: from_pretrained gives an eval model


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


LORA = ("--model.lora_r", "4", "--model.lr", "0.01")  # a tiny BERT's adapters learn quickly at a high rate


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_lora_trains_the_adapters_and_the_head_alone(tiny_bert, pooling):
    model = BertClassifier(num_classes=2, pretrained=str(tiny_bert), pooling=pooling, lora_r=4)
    model.setup("fit")
    config = BertConfig.from_pretrained(tiny_bert)
    hidden, layers = config.hidden_size, config.num_hidden_layers
    adapters = layers * 2 * (4 * hidden + hidden * 4)  # query and value: A is (4, hidden), B (hidden, 4)
    head = hidden * 2 + 2 + (hidden * hidden + hidden if pooling == "cls" else 0)  # the classifier; the pooler it reads
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == adapters + head


def test_lora_with_mean_pooling_and_gradient_checkpointing_gives_gradients_to_the_adapters_only(tiny_bert):
    model = BertClassifier(
        num_classes=2, pretrained=str(tiny_bert), pooling="mean", gradient_checkpointing=True, lora_r=4
    )
    model.setup("fit")
    model.train()
    vocabulary = BertConfig.from_pretrained(tiny_bert).vocab_size
    ids, lengths = torch.randint(5, vocabulary, (3, 12)), torch.tensor([12, 7, 3])
    model(ids, lengths).logsumexp(dim=1).sum().backward()
    named = dict(model.named_parameters())
    assert all(named[name].grad is None for name, p in named.items() if not p.requires_grad)
    trainable = {name: p.grad for name, p in named.items() if p.requires_grad}
    assert all(grad is not None for grad in trainable.values())
    # B starts at zero, so A's first gradient (through B) is zero too; B's and the classifier's are not
    assert all(grad.abs().sum() > 0 for name, grad in trainable.items() if "lora_A" not in name)


def test_a_lora_checkpoint_keeps_the_pretrained_weights_and_serves_them_merged(trained, tiny_bert, tmp_path):
    unmerged = BertClassifier.load_from_checkpoint(trained("bert_finetune", *LORA)).eval()  # as `test` reads it
    pretrained = BertClassifier(num_classes=2, pretrained=str(tiny_bert))
    pretrained.setup("fit")
    checkpoint = load_checkpoint(trained("bert_finetune", *LORA))
    ids, lengths = checkpoint.codec.tokenize(["A gem.", "Dull, dull and far too long for what it has to say."])
    with torch.no_grad():
        expected = unmerged.predict(ids, lengths)["probability"]
        with unmerged.model.disable_adapter():  # the frozen weights alone: the pretrained ones, untouched
            frozen = unmerged(ids, lengths)
        assert torch.equal(frozen, pretrained.eval()(ids, lengths))
        assert (frozen.softmax(dim=1).amax(dim=1) - expected).abs().max() > 1e-3  # the adapters learnt something

    folder = tmp_path / "export"
    export(checkpoint, folder, quantize="int8")
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["parameters"] == sum(p.numel() for p in pretrained.parameters())  # an ordinary model's
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert not [tensor.name for tensor in graph.initializer if "lora" in tensor.name.lower()]
    for served in (checkpoint.metadata["checkpoint"], folder / "model.onnx", folder / "model.pt2"):
        answered = load(served).predict((ids, lengths))["probability"]
        torch.testing.assert_close(answered, expected, rtol=1e-4, atol=1e-5)
    assert load(folder / "model_int8.pt").predict((ids, lengths))["prediction"].shape == (2,)  # merged keys load


def test_lora_layers_that_do_not_exist_and_quantization_aware_training_are_one_line(run_cli, capsys):
    for options in (
        ["--model.lora_targets", "[no_such_layer]"],
        ["--trainer.callbacks+={{ cookiecutter.__package }}.quantize.QuantizationAwareTraining"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            run_cli("fit", "bert_finetune", "--trainer.fast_dev_run", "true", *LORA, *options)
        # transformers' bar for reading the pretrained weights comes first (QAT's refusal comes once fit has started)
        error = capsys.readouterr().err
        lines = [line for line in error.splitlines() if line and not line.startswith("Loading weights")]
        assert exit_info.value.code == 2 and len(lines) == 1 and "Traceback" not in lines[0], lines
        assert ("no_such_layer" if "--model.lora_targets" in options else "PostTrainingQuantization") in lines[0]
