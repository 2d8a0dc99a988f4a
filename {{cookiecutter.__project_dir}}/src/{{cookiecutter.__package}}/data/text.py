"""Labelled texts for classification: a Hugging Face dataset by name, or local csv/json/parquet files.

    --data.dataset cornell-movie-review-data/rotten_tomatoes   # a dataset on the Hugging Face Hub
    --data.dataset path/to/folder      # train.csv, validation.csv, test.csv (or .json, .jsonl, .parquet)
    --data.data_files '{train: reviews.csv, test: held_out.csv}'   # files by split, any names

`text_column` and `label_column` name the columns. Labels are class indices 0..len(labels)-1, or
names listed in `labels` (`--data.labels '[neg, pos]'` reads "neg" as 0). A seeded `val_size`
share of the training rows becomes the validation split when the data has none.

A word-level tokenizer (Hugging Face `tokenizers`) is trained on the training split only: lower
case, accents stripped, split on whitespace and punctuation; the `vocab_size - 2` most frequent words
seen at least `min_frequency` times get an id, every other word becomes [UNK] (1), and [PAD] is 0.
A pretrained model reads text with its own tokenizer instead (`--data.tokenizer <its name or folder>`:
WordPiece for BERT). Either lives in the data module's codec (`TextCodec`), saved in every checkpoint, so `predict` and
serving read text exactly as training did. Texts are cut to `max_length` tokens and padded per batch
to the longest text in it.
A batch is `(token_ids (N, L), lengths (N,), labels (N,))`; padding is where position >= length.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from pydantic import Field, field_validator
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from .. import ConfigError, require_positive
from ..hub import before_hub, from_hub
from .base import SplitDataModule, check_fold, fold_split
from .codec import Codec, Request

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1  # the models rely on these: padding_idx, and word dropout
FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
MAX_REQUEST_CHARS = 20_000  # a served text longer than this is refused (the model reads max_length tokens anyway)

BLANKS = " \t\n\r\f\v"  # a text of only these is blank; the schema's pattern and not_blank say the same
# The pattern is in the JSON schema only: not_blank checks it, with a message that a pattern error would not give.
NOT_BLANK = {"pattern": "[^ \\t\\n\\r\\f\\v]"}
Text = Annotated[str, Field(min_length=1, max_length=MAX_REQUEST_CHARS, json_schema_extra=NOT_BLANK)]


class TextRequest(Request):
    text: Text | Annotated[list[Text], Field(min_length=1)] = Field(description="a text, or a list of them")

    @field_validator("text")
    @classmethod
    def not_blank(cls, text: str | list[str]) -> str | list[str]:
        for i, one in enumerate([text] if isinstance(text, str) else text):
            if not one.strip(BLANKS):
                raise ValueError(f"text {i + 1} is blank; give it some words")
        return text

    def items(self) -> list[str]:
        return self.text if isinstance(self.text, list) else [self.text]


Row = tuple[str, int]  # a text and its class index


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int, max_length: int) -> Tokenizer:
    """A word-level tokenizer fitted to `texts`: truncates to `max_length`, pads a batch to its longest text."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)  # and control chars gone
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # words and punctuation marks
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK])
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token=PAD)
    return tokenizer


def pretrained_tokenizer(name: str, max_length: int) -> Tokenizer:
    """The tokenizer of a pretrained model (a Hub name or a folder), set to cut at `max_length` and pad per batch."""
    from transformers import AutoTokenizer  # only projects with a pretrained text model have transformers

    loaded = from_hub(AutoTokenizer.from_pretrained, name, "--data.tokenizer")
    tokenizer = loaded.backend_tokenizer  # the fast tokenizer itself: it travels as JSON, like a trained one
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=loaded.pad_token_id or 0, pad_token=loaded.pad_token or PAD)
    return tokenizer


@dataclasses.dataclass(kw_only=True)
class TextCodec(Codec):
    """Texts -> (token ids, lengths) with the tokenizer of training; answers the class and its label."""

    request_model = TextRequest
    playground = "text"
    example_request = {"text": ["A gem of a film: funny, warm and beautifully acted.", "Dull and far too long."]}
    tokenizer: str = dataclasses.field(repr=False)  # the tokenizer as JSON (`Tokenizer.to_str()`): it travels as text
    max_length: int

    def __post_init__(self) -> None:
        self._tokenizer = Tokenizer.from_str(self.tokenizer)
        padding = self._tokenizer.padding
        self.pad_id = padding["pad_id"] if padding else PAD_ID

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw texts -> (token ids (N, L) padded to the longest text, lengths (N,)): what the models read."""
        encodings = self._tokenizer.encode_batch(texts)
        ids = torch.tensor([encoding.ids for encoding in encodings], dtype=torch.long)
        lengths = torch.tensor([sum(encoding.attention_mask) for encoding in encodings], dtype=torch.long)
        return ids, lengths.clamp(min=1)  # a text that yields no token at all reads as one [PAD]

    def known_words(self, texts: list[str]) -> list[int]:
        """How many tokens of each text the tokenizer knows: neither special ([CLS], [PAD], ...) nor [UNK]."""
        unk = self._tokenizer.token_to_id(UNK)
        encodings = self._tokenizer.encode_batch(texts)
        return [
            sum(1 for i, special in zip(e.ids, e.special_tokens_mask, strict=True) if not special and i != unk)
            for e in encodings
        ]

    def collate(self, rows: list[Row] | list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """A DataLoader's list of rows -> one batch (token ids, lengths, labels); labels are None for bare texts."""
        if isinstance(rows[0], str):
            return (*self.tokenize(rows), None)
        texts, labels = zip(*rows, strict=True)
        return (*self.tokenize(list(texts)), torch.tensor(labels, dtype=torch.long))

    def encode(self, items: list[str]) -> tuple[torch.Tensor, ...]:
        return self.tokenize(items)  # padded to the request's longest text: padding changes no prediction

    def concatenate(self, parts: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """Requests of texts of different lengths in one batch: each padded to the batch's longest."""
        longest = max(ids.shape[1] for ids, _ in parts)
        ids = torch.cat([F.pad(ids, (0, longest - ids.shape[1]), value=self.pad_id) for ids, _ in parts])
        return ids, torch.cat([lengths for _, lengths in parts])

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """The example request padded to max_length: an exported graph that fixes the text length (an RNN's) fixes
        it there, and the server pads shorter texts up to it."""
        ids, lengths = super().example_inputs()
        return F.pad(ids, (0, self.max_length - ids.shape[1]), value=self.pad_id), lengths


class TextDataModule(SplitDataModule):
    codec: TextCodec

    def __init__(
        self,
        dataset: str | None = "cornell-movie-review-data/rotten_tomatoes",
        data_files: dict[str, str] | None = None,
        text_column: str = "text",
        label_column: str = "label",
        labels: tuple[str, ...] = ("negative", "positive"),
        tokenizer: str | None = None,
        vocab_size: int = 20000,
        min_frequency: int = 2,
        max_length: int = 128,
        val_size: float = 0.1,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 42,
        predict_texts: list[str] | None = None,
        predict_file: str | None = None,
        folds: int | None = None,
        fold: int = 0,
    ) -> None:
        """`tokenizer`: a pretrained model's tokenizer (a Hub name or a folder) instead of one trained here (then
        `vocab_size` and `min_frequency` do not apply). `predict_texts` (or `predict_file`, one text per line)
        are what `predict` classifies: the CLI's `--text` and `--text_file`; without them, the test split. `folds`: the
        training rows (with the validation split's, if the data has one) are cut into that many parts, and part `fold`
        validates."""
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters(ignore=["vocab_size", "min_frequency"] if tokenizer else [])  # not used then
        require_positive(self, vocab_size=vocab_size, min_frequency=min_frequency, max_length=max_length)
        if len(labels) < 2:
            raise ConfigError(f"TextDataModule: labels must name at least 2 classes, got {list(labels)}")
        if not 0 < val_size < 1:
            raise ConfigError(
                f"TextDataModule: val_size is the share of training rows for validation, in (0, 1); got {val_size}"
            )
        if vocab_size < 3:
            raise ConfigError(
                f"TextDataModule: vocab_size must be at least 3 ([PAD], [UNK] and a word), got {vocab_size}"
            )
        if dataset is None and not data_files:
            raise ConfigError("TextDataModule: give --data.dataset (a Hub name or a folder) or --data.data_files")
        check_fold(self, folds, fold)
        self.folds, self.fold = folds, fold
        self.dataset, self.data_files, self.text_column, self.label_column = (
            dataset,
            data_files,
            text_column,
            label_column,
        )
        self.label_names, self.min_frequency, self.val_size, self.seed = list(labels), min_frequency, val_size, seed
        self.predict_texts, self.predict_file = predict_texts, predict_file  # what `predict` classifies, if given
        self.max_length = max_length
        self.tokenizer, self.trained_vocab_size = tokenizer, vocab_size
        self.num_classes = len(labels)  # linked to the model, as are vocab_size and max_length
        self.texts_to_predict: list[str] = []
        # The codec comes with the tokenizer: trained in setup() on the train split, or restored from a checkpoint.

    @functools.cached_property
    def pretrained(self) -> Tokenizer | None:
        """The pretrained model's tokenizer, read when first needed: a trained model's checkpoint holds it, so
        `export` and `serve` never read it, and `predict` and `test` only for its size."""
        return pretrained_tokenizer(self.tokenizer, self.max_length) if self.tokenizer else None

    @property
    def vocab_size(self) -> int:
        """The tokenizer's size, linked to the model. A pretrained tokenizer that cannot be read here has none to
        give (AttributeError: the CLI then links nothing): a trained model's run names it, but its checkpoint holds
        it and the model's size, so `test` and `predict` need neither its folder nor the Hub."""
        try:
            pretrained = self.pretrained
        except ConfigError as err:  # raised again, in full, where training reads the tokenizer (setup)
            raise AttributeError(str(err)) from None
        return pretrained.get_vocab_size() if pretrained else self.trained_vocab_size

    # ---- loading ----------------------------------------------------------------------------------

    def _load(self):
        """The raw splits as a `datasets.DatasetDict` (downloaded and cached by `datasets` on first use)."""
        import datasets  # imported here: it takes a second, and only text tasks need it

        datasets.disable_progress_bars()
        files = self.data_files
        try:
            if files:
                suffixes = {Path(path).suffix for path in files.values()}
                if len(suffixes) != 1 or (suffix := suffixes.pop()) not in FORMATS:
                    raise ConfigError(f"data_files must all be one of {sorted(FORMATS)}, got {sorted(files.values())}")
                return datasets.load_dataset(FORMATS[suffix], data_files=dict(files))
            before_hub(str(self.dataset))  # not None: __init__ asks for a dataset or data_files
            return datasets.load_dataset(self.dataset)
        except ConfigError:
            raise
        except Exception as err:  # no such dataset or file, no network, a file that does not parse
            source = dict(files) if files else repr(self.dataset)
            raise ConfigError(
                f"could not load the text data {source}: {type(err).__name__}: {err}. Offline, point --data.dataset "
                "at a folder with train.csv (and validation.csv, test.csv) or pass --data.data_files"
            ) from None

    def prepare_data(self) -> None:
        if self.predict_texts is None and self.predict_file is None:
            self._load()  # download once, on one process; setup() reads the cache

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and (self.predict_texts is not None or self.predict_file is not None):
            self.texts_to_predict = self._read_texts_to_predict()
            return
        splits = self._load()
        if "train" not in splits:
            raise ConfigError(f"the text data has no 'train' split, only {list(splits)}; name one 'train'")
        train = self._rows(splits["train"], "train")
        if "validation" in splits:
            val = self._rows(splits["validation"], "validation")
        else:  # a seeded share of train, the same on every run and every rank
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed)).tolist()
            n_val = max(1, round(self.val_size * len(train)))
            val, train = [train[i] for i in order[:n_val]], [train[i] for i in order[n_val:]]
        if self.folds is not None:
            rows = train + val
            train_indices, val_indices = fold_split(len(rows), self.folds, self.fold, self.seed)
            train, val = [rows[i] for i in train_indices], [rows[i] for i in val_indices]
        self.train_set, self.val_set = train, val
        self.test_set = self._rows(splits["test"], "test") if "test" in splits else []
        if hasattr(self, "codec"):
            return
        try:  # a checkpoint's codec, when there is one, replaces this after setup
            tokenizer = self.pretrained or train_tokenizer(
                [text for text, _ in train], self.vocab_size, self.min_frequency, self.max_length
            )
        except ConfigError:
            if stage == "fit":
                raise
            return  # evaluating a trained model: its checkpoint's codec, tokenizer included, comes after setup
        self.codec = TextCodec(tokenizer=tokenizer.to_str(), max_length=self.max_length, labels=self.label_names)

    def _rows(self, split, name: str) -> list[Row]:
        """(text, class index) pairs of one split; rows without text are dropped with a warning."""
        text_column, label_column = self.text_column, self.label_column
        missing = [column for column in (text_column, label_column) if column not in split.column_names]
        if missing:
            raise ConfigError(
                f"the {name} split has no column {missing[0]!r}; its columns are {split.column_names}. "
                f"Set --data.text_column and --data.label_column"
            )
        pairs = zip(split[text_column], split[label_column], strict=True)
        rows = [(text, self._class_index(label, name)) for text, label in pairs]
        kept = [(text, label) for text, label in rows if isinstance(text, str) and text.strip()]
        if len(kept) < len(rows):
            rank_zero_warn(f"{name} split: dropped {len(rows) - len(kept)} rows with an empty {text_column!r}")
        if not kept:
            raise ConfigError(f"the {name} split has no rows with text in column {text_column!r}")
        return kept

    def _class_index(self, label: Any, split: str) -> int:
        names = self.label_names
        if isinstance(label, str) and label in names:
            return names.index(label)
        if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < self.num_classes:
            return label
        raise ConfigError(
            f"the {split} split has label {label!r} in column {self.label_column!r}; labels must be class "
            f"indices 0..{self.num_classes - 1} or one of the names {names}. Set --data.labels to the class names"
        )

    def _read_texts_to_predict(self) -> list[str]:
        texts = list(self.predict_texts or [])
        if self.predict_file is not None:
            path = Path(self.predict_file)
            if not path.is_file():
                raise ConfigError(f"--text_file {path}: no such file; give a text file with one text per line")
            texts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        empty = [i + 1 for i, text in enumerate(texts) if not text.strip()]
        if empty:
            raise ConfigError(f"text {empty[0]} to predict is empty; give each --text some words")
        if not texts:
            raise ConfigError(f"--text_file {self.predict_file} holds no text; write one text per line")
        return texts

    # ---- batching ---------------------------------------------------------------------------------

    def collate(self):
        if not hasattr(self, "codec"):
            raise ConfigError("no trained tokenizer: pass --ckpt_path best (or a .ckpt file) of a run of `fit`")
        return self.codec.collate

    def test_dataloader(self):
        if not self.test_set:
            raise ConfigError("the text data has no 'test' split; add a test file or run `validate` instead")
        return super().test_dataloader()

    def predict_dataloader(self):
        if not self.texts_to_predict:
            return self.test_dataloader()
        loader = self._loader(self.texts_to_predict)  # refuses to go on without a trained tokenizer
        unknown = [i + 1 for i, known in enumerate(self.codec.known_words(self.texts_to_predict)) if known == 0]
        if unknown:
            rank_zero_warn(f"text {unknown[0]} to predict has no word the tokenizer knows: its prediction is a guess")
        return loader

    def shown_inputs(self) -> list[str] | None:
        return self.texts_to_predict or None
