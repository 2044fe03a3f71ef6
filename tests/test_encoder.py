"""Tests of the transformer sentence encoders behind the classifier's second step."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bot.errors import EncoderDeferredError
from bot.understanding import encoder as encoder_module
from bot.understanding.encoder import ENCODER_DIM, cached_only, encoder


def similarity(language: str, a: str, b: str) -> float:
    model = encoder(language)
    return float(model.embed_one(a) @ model.embed_one(b))


@pytest.mark.parametrize(
    ("language", "text", "paraphrase", "unrelated"),
    [
        ("en", "where is my parcel", "track my package", "I love pizza with olives"),
        ("zh", "我的快递到哪了", "帮我查一下物流", "今天天气真不错"),
    ],
)
def test_vectors_are_unit_length_and_carry_meaning(
    language: str, text: str, paraphrase: str, unrelated: str
) -> None:
    vector = encoder(language).embed_one(text)
    assert vector.shape == (ENCODER_DIM,)
    assert vector.dtype == np.float32
    assert abs(float(vector @ vector) - 1.0) < 1e-4
    # e5 cosines crowd between 0.7 and 1, hence the small margin
    assert similarity(language, text, paraphrase) > similarity(language, text, unrelated) + 0.05


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_batch_embeds_as_single_messages(language: str) -> None:
    texts = ["where is my order", "我的订单到哪了", "KF-10001", "", "🙂"]
    batch = encoder(language).embed(texts)
    assert batch.shape == (len(texts), ENCODER_DIM)
    for text, row in zip(texts, batch, strict=True):
        assert np.allclose(encoder(language).embed_one(text), row, atol=1e-5)
    assert encoder(language).embed([]).shape == (0, ENCODER_DIM)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_huge_message_is_embedded(language: str) -> None:
    text = "我的订单到哪了 where is my order " * 20_000  # its timing: bench/timings.py
    vector = encoder(language).embed_one(text)
    assert vector.shape == (ENCODER_DIM,) and np.isfinite(vector).all()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_the_chinese_encoder_computes_in_the_calling_thread_only() -> None:
    # A team of OpenMP threads spins at every barrier while a partner waits for a core.
    script = (
        "import os\n"
        "from bot.understanding.encoder import encoder\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "encoder('zh').embed(['我的订单到哪了', '怎么退货'] * 8)\n"
        "print(before, len(os.listdir('/proc/self/task')), os.environ.get('OMP_NUM_THREADS'))\n"
    )
    environment = {**os.environ, "OMP_NUM_THREADS": "4"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True
    )
    before, after, variable = result.stdout.split()
    assert after == before  # no OpenMP worker threads were started
    assert variable == "4"  # the process's own setting is left as it was


def test_word_pieces_come_with_the_message_vector() -> None:
    model = encoder("en")
    assert isinstance(model, encoder_module.MiniLMEncoder)

    vector, pieces, words = model.embed_with_pieces("who covers the postage")

    assert np.allclose(vector, model.embed_one("who covers the postage"))
    assert words == ["who", "covers", "the", "postage"]
    assert pieces.shape == (4, ENCODER_DIM)
    assert np.allclose(np.linalg.norm(pieces, axis=1), 1.0, atol=1e-5)
    assert model.embed_with_pieces("")[1].shape == (0, ENCODER_DIM)


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="no encoder"):
        encoder("fr")


def test_the_converted_model_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = encoder_module._quantized_model(tmp_path)
    assert first.parent == tmp_path and first.stat().st_size > 1_000_000

    def convert_again(model: bytes, target: Path) -> None:
        raise AssertionError("converted twice")

    monkeypatch.setattr(encoder_module, "_convert", convert_again)
    assert encoder_module._quantized_model(tmp_path) == first


def test_an_unwritable_cache_falls_back_to_a_temporary_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder would go", encoding="utf-8")
    path = encoder_module._quantized_model(blocked)
    assert path.exists() and blocked not in path.parents
    assert "cannot cache the sentence encoder" in caplog.text


def test_a_model_file_of_another_origin_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encoder_module, "_SOURCE_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="not the expected model file"):
        encoder_module._quantized_model(tmp_path)


def test_the_chinese_encoder_serves_threads_one_at_a_time() -> None:
    texts = ["我的快递到哪了", "帮我查一下物流", "我要退货", "发票在哪里下载"] * 4
    expected = [encoder("zh").embed_one(text) for text in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(encoder("zh").embed_one, texts))
    assert all(np.array_equal(a, b) for a, b in zip(results, expected, strict=True))


def test_texts_with_the_same_word_pieces_share_one_inference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = encoder("en")
    assert isinstance(model, encoder_module.MiniLMEncoder)
    session = model._session
    runs: list[int] = []
    original = session.run

    def counted(*args: object, **kwargs: object) -> object:
        runs.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "run", counted)
    typed = "Has my refund for order 7731 been approved?"
    vector = model.embed_one(typed.lower())  # as the classifier reads it
    assert np.array_equal(model.embed_one(typed), vector)  # as the router reads it
    same, pieces, words = model.embed_with_pieces(f"  {typed} ")  # knowledge retrieval
    assert np.array_equal(same, vector) and len(pieces) == len(words)
    assert len(runs) == 1
    assert not vector.flags.writeable
    model.embed_one("Has my refund for order 7732 been approved?")
    assert len(runs) == 2


@pytest.mark.parametrize("language", ["en", "zh"])
def test_cached_only_answers_from_the_cache_or_defers(language: str) -> None:
    model = encoder(language)
    seen = model.embed_one("我想换一个收货地址 please")
    with cached_only():
        assert np.array_equal(model.embed_one("我想换一个收货地址 please"), seen)
        with pytest.raises(EncoderDeferredError):
            model.embed_one("我想取消刚才的订单 please")
        with pytest.raises(EncoderDeferredError):
            model.embed(["anything"])
    assert model.embed_one("我想取消刚才的订单 please").shape == (ENCODER_DIM,)
