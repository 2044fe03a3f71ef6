"""Tests of the intent classifier, trained on small handwritten data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bot import constants
from bot.understanding import classifier as classifier_module
from bot.understanding.classifier import FORMAT_VERSION, IntentClassifier, IntentPrediction
from bot.understanding.encoder import encoder
from bot.understanding.features import embedder, has_words, normalize

EXAMPLES = [
    ("where is my order", "track_order"),
    ("track my package", "track_order"),
    ("has my parcel shipped yet", "track_order"),
    ("when will my order arrive", "track_order"),
    ("what's the delivery status of my purchase", "track_order"),
    ("I want to return these shoes", "return_item"),
    ("how do I send an item back", "return_item"),
    ("can I return a product I bought", "return_item"),
    ("I'd like a refund for this jacket", "return_item"),
    ("start a return please", "return_item"),
    ("change my delivery address", "change_address"),
    ("I moved, please update the shipping address", "change_address"),
    ("ship it to a different address", "change_address"),
    ("wrong address on my order, fix it", "change_address"),
    ("update where my package goes", "change_address"),
    ("我的订单到哪了", "track_order"),
    ("查一下物流", "track_order"),
    ("包裹什么时候到", "track_order"),
    ("我要退货", "return_item"),
    ("这件衣服怎么退", "return_item"),
    ("申请退款退货", "return_item"),
    ("修改收货地址", "change_address"),
    ("地址写错了帮我改一下", "change_address"),
    ("换个收货地址", "change_address"),
]
OUT_OF_SCOPE = [
    "what is the capital of france",
    "tell me a joke",
    "how tall is mount everest",
    "今天天气怎么样",
]


@pytest.fixture(scope="module")
def classifier() -> IntentClassifier:
    return IntentClassifier.train(EXAMPLES)


def test_predicts_english_and_chinese(classifier: IntentClassifier) -> None:
    assert classifier.intents == ("change_address", "return_item", "track_order")
    assert classifier.predict("where is my package").intent == "track_order"
    assert classifier.predict("I want to return my order").intent == "return_item"
    assert classifier.predict("please change the address").intent == "change_address"
    assert classifier.predict("我的包裹到哪了").intent == "track_order"
    assert classifier.predict("我想退货").intent == "return_item"
    assert classifier.predict("收货地址要改").intent == "change_address"


def test_full_width_mixed_text_and_emoji(classifier: IntentClassifier) -> None:
    assert classifier.predict("ＷＨＥＲＥ IS MY ORDER 📦").intent == "track_order"
    assert classifier.predict("我要 return 这个 jacket 🙁").intent == "return_item"


def test_ranking_is_ordered_and_bounded(classifier: IntentClassifier) -> None:
    prediction = classifier.predict("track my order")
    confidences = [confidence for _, confidence in prediction.ranking]
    assert prediction.ranking[0][0] == "track_order"
    assert sorted(confidences, reverse=True) == confidences
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert prediction.confidence == confidences[0] > 0.5
    assert sorted(i for i, _ in prediction.ranking) == list(classifier.intents)


def test_empty_and_unrelated_text_is_out_of_scope(classifier: IntentClassifier) -> None:
    for text in ("", "   ", "🙂", "zxqv blorf"):
        prediction = classifier.predict(text)
        assert prediction.out_of_scope, text
        assert prediction.intent is None
        assert prediction.confidence == 0.0


def test_out_of_scope_examples_are_learnt() -> None:
    classifier = IntentClassifier.train(EXAMPLES, out_of_scope_examples=OUT_OF_SCOPE)
    assert classifier.intents == ("change_address", "return_item", "track_order")
    assert classifier.predict("tell me a funny joke").out_of_scope
    assert classifier.predict("明天天气怎么样").out_of_scope
    assert classifier.predict("where is my order").intent == "track_order"


def test_huge_message_is_classified(classifier: IntentClassifier) -> None:
    text = "where is my order " * 60_000  # about 1 MB; its timing: bench/timings.py
    assert classifier.predict(text).intent == "track_order"


def test_predict_many_matches_predict(classifier: IntentClassifier) -> None:
    texts = ["where is my order", "", "我要退货"]
    assert classifier.predict_many(texts) == [classifier.predict(t) for t in texts]


def test_single_intent() -> None:
    classifier = IntentClassifier.train([("hello there", "greet"), ("hi", "greet")])
    assert classifier.intents == ("greet",)
    assert classifier.predict("hello").intent == "greet"
    assert classifier.predict("refund my broken vacuum cleaner").out_of_scope


def test_two_intents_two_examples_each() -> None:
    classifier = IntentClassifier.train(
        [("hello", "greet"), ("hi there", "greet"), ("bye", "goodbye"), ("see you", "goodbye")]
    )
    assert classifier.predict("hello there").intent == "greet"
    assert classifier.predict("bye bye").intent == "goodbye"


def test_no_examples_is_an_error() -> None:
    with pytest.raises(ValueError):
        IntentClassifier.train([])


def test_save_and_load_round_trip(classifier: IntentClassifier, tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    classifier.save(path)
    loaded = IntentClassifier.load(path)
    assert loaded.intents == classifier.intents
    for text in ("where is my order", "修改地址", "something else entirely"):
        assert loaded.predict(text) == classifier.predict(text)
    with np.load(path, allow_pickle=False) as archive:  # no pickled objects inside
        assert json.loads(archive["meta"].tobytes())["format"] == FORMAT_VERSION


def test_load_rejects_another_format(classifier: IntentClassifier, tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    classifier.save(path)
    with np.load(path) as archive:
        arrays = dict(archive)
    meta = json.loads(arrays["meta"].tobytes())
    meta["format"] = FORMAT_VERSION + 1
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ValueError):
        IntentClassifier.load(path)


def test_train_cached_reuses_and_invalidates(tmp_path: Path) -> None:
    first = IntentClassifier.train_cached(EXAMPLES, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    inode = files[0].stat().st_ino
    second = IntentClassifier.train_cached(EXAMPLES, cache_dir=tmp_path)
    assert files[0].stat().st_ino == inode  # loaded, not trained and written again
    assert second.predict("我要退货") == first.predict("我要退货")

    files[0].write_bytes(b"not a classifier")  # corrupt cache: retrained, overwritten
    third = IntentClassifier.train_cached(EXAMPLES, cache_dir=tmp_path)
    assert third.predict("where is my order").intent == "track_order"
    assert IntentClassifier.load(files[0]).intents == first.intents

    IntentClassifier.train_cached(EXAMPLES[:-1], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_prediction_properties() -> None:
    prediction = IntentPrediction(ranking=(("a", 0.9), ("b", 0.1)), out_of_scope=False)
    assert (prediction.intent, prediction.confidence) == ("a", 0.9)
    rejected = IntentPrediction(ranking=(("a", 0.2),), out_of_scope=True)
    assert (rejected.intent, rejected.confidence) == (None, 0.0)


def test_one_message_embeds_as_in_a_batch() -> None:
    """Inference embeds one message at a time; training embeds batches: they must agree."""
    texts = [normalize(t) for t in ("where is my order", "我的订单到哪了", "KF-10001", "", "🙂")]
    batch = embedder().embed(texts)
    for text, expected in zip(texts, batch, strict=True):
        assert np.allclose(embedder().embed_one(text), expected, atol=1e-6)


def test_an_unwritable_cache_only_costs_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder would go", encoding="utf-8")
    examples = [
        ("hello", "greet"),
        ("hi there", "greet"),
        ("bye", "goodbye"),
        ("see you", "goodbye"),
    ]
    classifier = IntentClassifier.train_cached(examples, cache_dir=blocked)
    assert classifier.predict("hello").intent == "greet"
    assert "cannot cache the intent classifier" in caplog.text


class SpyEncoder:
    """Records which language's encoder was asked, and delegates to the real one."""

    def __init__(self, calls: list[str], language: str) -> None:
        self.calls = calls
        self.language = language

    def embed_one(self, text: str) -> np.ndarray:
        self.calls.append(self.language)
        return encoder(self.language).embed_one(text)

    def embed(self, texts: list[str]) -> np.ndarray:
        return encoder(self.language).embed(texts)


@pytest.fixture()
def encoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(classifier_module, "encoder", lambda language: SpyEncoder(calls, language))
    return calls


def test_the_second_step_runs_only_when_the_fast_model_is_unsure(
    classifier: IntentClassifier, encoder_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(classifier_module, "_CASCADE_GAP", 0.0)  # never unsure
    assert classifier.predict("where is my order").intent == "track_order"
    assert encoder_calls == []
    monkeypatch.setattr(classifier_module, "_CASCADE_GAP", 1e9)  # always unsure
    assert classifier.predict("where is my order").intent == "track_order"
    assert classifier.predict("我的订单到哪了").intent == "track_order"
    assert classifier.predict("我要 return 这个 jacket").intent == "return_item"
    assert encoder_calls == ["en", "zh", "zh"]  # each message read by its language's encoder


def test_the_second_step_is_saved_and_loaded(
    classifier: IntentClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(classifier_module, "_CASCADE_GAP", 1e9)
    path = tmp_path / "model.npz"
    classifier.save(path)
    loaded = IntentClassifier.load(path)
    for text in ("where is my order", "修改地址", "send the item back", "我要退货"):
        assert loaded.predict(text) == classifier.predict(text)


def test_a_fast_only_classifier_never_loads_an_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_encoder(language: str) -> None:
        raise AssertionError("encoder loaded")

    monkeypatch.setattr(classifier_module, "encoder", no_encoder)
    monkeypatch.setattr(classifier_module, "_CASCADE_GAP", 1e9)
    fast = IntentClassifier.train(EXAMPLES, cascade=False)
    assert fast.predict("where is my order").intent == "track_order"
    fast.save(tmp_path / "fast.npz")
    assert IntentClassifier.load(tmp_path / "fast.npz").predict("我要退货").intent == "return_item"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("where is my order", True),
        ("my order is KF-10001", True),
        ("我的订单号是KF-10001", True),
        ("refund", True),
        ("谢", True),
        ("KF-10001", False),
        ("12345 6789", False),
        ("alice@example.com", False),
        ("see https://example.com/a/b", True),
        ("https://example.com/a/b", False),
        ("a 🙂", False),
        ("", False),
    ],
)
def test_only_words_are_worth_an_encoder(text: str, words: bool) -> None:
    assert has_words(normalize(text)) is words


def test_an_order_number_never_reaches_the_encoder(
    classifier: IntentClassifier, encoder_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(classifier_module, "_CASCADE_GAP", 1e9)
    for text in ("KF-10001", "alice@example.com", "+86 138 0013 8000"):
        classifier.predict(text)
    assert encoder_calls == []


def test_a_language_without_examples_gets_no_encoder(
    encoder_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    english = IntentClassifier.train([(t, i) for t, i in EXAMPLES if t.isascii()])
    monkeypatch.setattr(classifier_module, "_CASCADE_GAP", 1e9)
    english.predict("我的订单到哪了呢")
    english.load_encoders()
    assert encoder_calls == []  # no Chinese examples: the Chinese encoder would add nothing
    english.predict("where is my order")
    assert encoder_calls == ["en"]


def test_train_cached_retrains_when_the_settings_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    IntentClassifier.train_cached(EXAMPLES, cache_dir=tmp_path)
    monkeypatch.setattr(classifier_module, "_HYPERPARAMETERS", (9.0,))
    IntentClassifier.train_cached(EXAMPLES, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_only_chinese_sentences_may_be_slow(classifier: IntentClassifier) -> None:
    assert classifier.may_be_slow("我的订单到哪了")
    assert not classifier.may_be_slow("where is my order")
    assert not classifier.may_be_slow("KF-10001")
    english = IntentClassifier.train([(t, i) for t, i in EXAMPLES if t.isascii()], cascade=False)
    assert not english.may_be_slow("我的订单到哪了")


def test_the_cache_keeps_the_classifiers_used_last(tmp_path: Path) -> None:
    keep = constants.DEFAULT_CACHE_KEEP
    sets = [EXAMPLES[: len(EXAMPLES) - i] for i in range(keep + 2)]
    vectors = tmp_path / "knowledge-0123456789abcdef01234567.npz"  # not a classifier: kept
    vectors.write_bytes(b"knowledge vectors")
    for examples in sets:
        IntentClassifier.train_cached(examples, cache_dir=tmp_path)
    assert vectors.read_bytes() == b"knowledge vectors"
    vectors.unlink()
    files = set(tmp_path.glob("*.npz"))
    assert len(files) == keep
    IntentClassifier.train_cached(sets[-keep], cache_dir=tmp_path)  # the oldest kept: a hit
    assert set(tmp_path.glob("*.npz")) == files
    IntentClassifier.train_cached(sets[0], cache_dir=tmp_path)  # pruned earlier: trained again
    remaining = set(tmp_path.glob("*.npz"))
    assert len(remaining) == keep and len(remaining - files) == 1
