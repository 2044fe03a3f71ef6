"""kefu's sentiment scorer on sentences written for these tests (English and Chinese), and
the score on every parsed message."""

from __future__ import annotations

import pytest

from bot.interpreter import Interpreter
from bot.understanding.entities import EntityExtractor
from bot.understanding.features import embedder, normalize
from bot.understanding.sentiment import NEGATIVE_BELOW, ChineseLexicon, analyzer

NEGATIVE = [
    ("en", "It's been twelve days and my refund still hasn't arrived."),
    ("en", "Your courier threw my parcel over the fence and the vase is in pieces."),
    ("en", "I've been on hold for an hour, this is ridiculous."),
    ("en", "Oh great, the order was cancelled again without a word."),
    ("en", "I'm not happy with this at all."),
    ("en", "Why does nobody answer my emails?"),
    ("en", "The blender stopped working after two uses."),
    ("en", "Never buying from this store again."),
    ("en", "Where is my package? It was due last Tuesday."),
    ("en", "The flight was delayed five hours and we got no food vouchers."),
    ("zh", "快递员态度太差了，东西直接扔在门口。"),
    ("zh", "等了两个小时，饭都凉了，再也不点了。"),
    ("zh", "退款申请提交一周了还没到账，客服也不回复。"),
    ("zh", "收到的杯子是碎的，包装太简陋。"),
    ("zh", "质量不好，穿了一次就开线了。"),
    ("zh", "外观还行，但是用了两天就坏了。"),
    ("zh", "描述和实物完全不符，很失望。"),
    ("zh", "水果一半都烂了，不新鲜。"),
    ("zh", "一点都不好吃，太咸了。"),
    ("zh", "打了三次电话都没人理，真是无语。"),
]
NOT_NEGATIVE = [
    ("en", "Thanks a lot, the replacement arrived this morning and works perfectly."),
    ("en", "Can I change the delivery address for my order?"),
    ("en", "Do you ship to Norway?"),
    ("en", "The support agent was friendly and solved it quickly."),
    ("en", "Not bad at all, I'd order again."),
    ("en", "What time do you open on Saturdays?"),
    ("en", "Great service, thank you!"),
    ("en", "My order number is 48213."),
    ("zh", "送货很快，包装也很好，谢谢！"),
    ("zh", "味道不错，分量也足，下次还会再来。"),
    ("zh", "客服很耐心，问题很快就解决了。"),
    ("zh", "衣服质量挺好的，很合身。"),
    ("zh", "东西不差，价格也实惠。"),
    ("zh", "非常满意，推荐给大家。"),
    ("zh", "虽然有点贵，但是质量很好。"),
    ("zh", "性价比很高，会回购的。"),
]


@pytest.mark.parametrize(("language", "text"), NEGATIVE)
def test_negative_messages_score_below_the_boundary(language: str, text: str) -> None:
    assert analyzer().score(text, language) < NEGATIVE_BELOW


@pytest.mark.parametrize(("language", "text"), NOT_NEGATIVE)
def test_other_messages_score_at_or_above_the_boundary(language: str, text: str) -> None:
    assert analyzer().score(text, language) >= NEGATIVE_BELOW


def test_scores_stay_between_minus_one_and_one_and_rank_strength() -> None:
    scorer = analyzer()
    furious = scorer.score("太差了！垃圾！骗子！再也不买了，我要投诉！", "zh")
    mild = scorer.score("有点慢。", "zh")
    assert -1.0 <= furious < mild < 0.5
    assert furious < -0.9
    angry = scorer.score("This is the worst service ever, I want my money back now!", "en")
    thanks = scorer.score("Thank you so much, you were very helpful!", "en")
    assert -1.0 <= angry < -0.5 < 0.3 < thanks <= 1.0


def test_chinese_negation_and_contrast() -> None:
    scorer = analyzer()
    assert scorer.score("好吃", "zh") > 0 > scorer.score("不好吃", "zh")
    assert scorer.score("满意", "zh") > 0 > scorer.score("不太满意", "zh")
    assert scorer.score("差", "zh") < scorer.score("不差", "zh")
    # what follows "但是" weighs more than what comes before it
    assert scorer.score("价格便宜，但是质量很差", "zh") < 0
    assert scorer.score("价格有点贵，但是质量很好", "zh") > 0


def test_the_script_decides_the_lexicon_not_the_conversation_language() -> None:
    scorer = analyzer()
    assert scorer.score("太慢了，很失望", "en") == scorer.score("太慢了，很失望", "zh")
    assert scorer.score("", "zh") == 0.0
    assert scorer.score("   ", "en") == 0.0
    assert abs(scorer.score("12345", "zh")) < 0.2  # nothing said: near neutral


def test_lexicon_file_format() -> None:
    lexicon = ChineseLexicon.parse("# comment\n@NEG 不\n@INT 很\n好 1\n坏 -2\n\n")
    assert lexicon.words == {"好": 1.0, "坏": -2.0}
    assert lexicon.modifiers == {"不": "NEG", "很": "INT"}
    assert lexicon.polarity("很好") == pytest.approx(1.5)
    assert lexicon.polarity("不好") == pytest.approx(-0.8)
    assert lexicon.polarity("不坏") == pytest.approx(1.0)
    assert lexicon.polarity("好，坏") == pytest.approx(-1.0)


def test_every_parsed_message_carries_its_score_but_a_button_press_does_not() -> None:
    interpreter = Interpreter(
        classifier=None,
        extractor=EntityExtractor([], {}),
        intents={"greet"},
        sentiment=analyzer(),
    )
    parsed = interpreter.parse("My parcel is lost and nobody helps me!", language="en")
    assert parsed.sentiment is not None and parsed.sentiment < -0.3
    assert parsed.to_rasa()["sentiment"] == round(parsed.sentiment, 4)
    assert interpreter.may_be_slow("hello")  # the English encoder: off the event loop
    pressed = interpreter.parse("Hi", payload="/greet", language="en")
    assert pressed.sentiment is None and "sentiment" not in pressed.to_rasa()
    plain = Interpreter(classifier=None, extractor=EntityExtractor([], {}), intents=set())
    assert "sentiment" not in plain.parse("hello", language="en").to_rasa()


def test_the_encoder_reads_only_messages_the_first_stage_is_unsure_of() -> None:
    english = analyzer().english()
    before = english.encoder_reads
    for text in ("Great service, thank you!", "I've been on hold for an hour, this is ridiculous."):
        analyzer().score(text, "en")
    assert english.encoder_reads == before  # clear either way: the static embedding decides
    assert english.negates_affect("Not bad at all, I'd order again.")
    assert not english.negates_affect("Nothing arrived and the box was bad.")
    analyzer().score("Not bad at all, I'd order again.", "en")  # word order matters here
    assert english.encoder_reads == before + 1
    for code in ("KF-20417", "bob@example.org", "+44 20 7946 0958"):
        assert analyzer().score(code, "en") == 0.0  # nothing said, and nothing to encode
    assert english.encoder_reads == before + 1


def test_the_static_embedding_of_a_classified_message_is_reused() -> None:
    text = normalize("My parcel is lost and nobody helps me!")
    assert embedder().embed_one(text) is embedder().embed_one(text)


def test_a_message_is_parsed_on_the_spot_unless_an_encoder_must_read_it() -> None:
    interpreter = Interpreter(
        classifier=None, extractor=EntityExtractor([], {}), intents=set(), sentiment=analyzer()
    )
    clear = "Thank you so much, the parcel came this morning!"
    quick = interpreter.parse_if_quick(clear, language="en")
    assert quick == interpreter.parse(clear, language="en")
    negated = "Not bad at all, the courier was even early for once."
    assert interpreter.parse_if_quick(negated, language="en") is None  # MiniLM must read it
    parsed = interpreter.parse(negated, language="en")  # in a thread, in a server
    assert interpreter.parse_if_quick(negated, language="en") == parsed  # now it is known
    assert interpreter.parse_if_quick("thanks " * 100, language="en") is None  # long
