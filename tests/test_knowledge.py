"""The offline knowledge answerer: retrieval in English and Chinese, and staying quiet."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from bot.knowledge import (
    Embedder,
    KnowledgeAnswerer,
    KnowledgeBase,
    default_embedders,
    excerpt,
    reflow,
    tokenize,
)
from bot.ports import AnswerRequest

REPO = Path(__file__).resolve().parent.parent

RETURNS_EN = """# Returns

You can return most items within 30 days of delivery.

## Refund timing

Refunds are issued to the original payment method within 5 business days after we receive
the returned parcel. Bank processing may add 2 to 3 days.

## Items that cannot be returned

Gift cards, underwear and opened cosmetics cannot be returned for hygiene reasons.

## How to send an item back

Print the prepaid return label from your order page, pack the item in its original box and
drop it at any post office.
"""

SHIPPING_EN = """# Shipping

## Delivery times

Standard shipping takes 3 to 5 business days. Express shipping arrives the next business day
when you order before 2 pm.

## Shipping costs

Shipping is free on orders over 50 euros. Below that, standard shipping costs 4.90 euros.

## International orders

We ship to all EU countries. Customs duties for other countries are paid by the recipient.
"""

ACCOUNT_EN = """# Account

## Password reset

Use "Forgot password" on the sign-in page; we email a reset link valid for one hour.

## Newsletter

Unsubscribe from the newsletter with the link at the bottom of every email.
"""

RETURNS_ZH = """# 退货

收到商品后 30 天内可以退货。

## 退款时间

我们收到退回的包裹后，退款会在 5 个工作日内退回原支付方式。银行处理可能另需 2 到 3 天。

## 不可退货的商品

礼品卡、内衣和已开封的化妆品出于卫生原因不可退货。
"""

SHIPPING_ZH = """---
lang: zh
---
# 配送

## 配送时间

标准配送需要 3 到 5 个工作日。下午 2 点前下单，快递次日送达。

## 运费

订单满 50 欧元免运费，否则标准运费为 4.90 欧元。
"""


@pytest.fixture
def knowledge_dir(tmp_path: Path) -> Path:
    root = tmp_path / "knowledge"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "returns.md").write_text(RETURNS_EN)
    (root / "policies" / "returns.zh.md").write_text(RETURNS_ZH)
    (root / "shipping.md").write_text(SHIPPING_EN)
    (root / "shipping-cn.md").write_text(SHIPPING_ZH)
    (root / "account.md").write_text(ACCOUNT_EN)
    (root / "empty.md").write_text("# Nothing here\n\n## Nor here\n")
    return root


@pytest.fixture
def answerer(knowledge_dir: Path) -> KnowledgeAnswerer:
    return KnowledgeAnswerer(KnowledgeBase.from_directory(knowledge_dir))


def _request(text: str, language: str = "en", kind: str = "search") -> AnswerRequest:
    return AnswerRequest(text=text, language=language, kind=kind, conversation_id="rest:alice")


def test_sections_follow_headings(knowledge_dir: Path) -> None:
    base = KnowledgeBase.from_directory(knowledge_dir)
    [top] = base.search("refund timing", limit=1)

    assert top.title == "Returns › Refund timing"
    assert top.source == "policies/returns.md"
    assert top.reference == "policies/returns.md#Returns › Refund timing"
    assert top.text.startswith("Refunds are issued")
    assert len(base) == 14
    assert not base.search("nothing here nor")


@pytest.mark.parametrize(
    ("question", "section"),
    [
        ("how long until my refund arrives", "policies/returns.md#Returns › Refund timing"),
        (
            "Can I return opened cosmetics?",
            "policies/returns.md#Returns › Items that cannot be returned",
        ),
        ("how do I send back an item", "policies/returns.md#Returns › How to send an item back"),
        ("How much does shipping cost?", "shipping.md#Shipping › Shipping costs"),
        ("Do you ship to other countries? customs", "shipping.md#Shipping › International orders"),
        ("I forgot my password", "account.md#Account › Password reset"),
        ("how many days does express delivery take", "shipping.md#Shipping › Delivery times"),
    ],
)
async def test_english_questions(
    answerer: KnowledgeAnswerer, question: str, section: str | None
) -> None:
    answer = await answerer.answer(_request(question))

    if section is None:
        assert answer.text is None
    else:
        assert answer.sources == (section,)
        assert answer.text


@pytest.mark.parametrize(
    ("question", "section"),
    [
        ("退款多久能到账？", "policies/returns.zh.md#退货 › 退款时间"),
        ("化妆品开封了还能退吗", "policies/returns.zh.md#退货 › 不可退货的商品"),
        ("运费是多少", "shipping-cn.md#配送 › 运费"),
        ("快递几天送达？", "shipping-cn.md#配送 › 配送时间"),
    ],
)
async def test_chinese_questions(answerer: KnowledgeAnswerer, question: str, section: str) -> None:
    answer = await answerer.answer(_request(question, language="zh"))

    assert answer.sources == (section,)
    assert answer.text is not None
    assert answer.text.startswith(("我们", "礼品卡", "订单", "标准"))


async def test_query_language_is_preferred(answerer: KnowledgeAnswerer) -> None:
    base = answerer.knowledge
    [english] = base.search("refund 5 business days", language="en", limit=1)
    [chinese] = base.search("退款 5 个工作日", language="zh-CN", limit=1)

    assert english.language == "en"
    assert chinese.language == "zh"
    assert chinese.source == "policies/returns.zh.md"


@pytest.mark.parametrize(
    ("question", "language"),
    [
        ("What's the weather in Paris tomorrow?", "en"),
        ("Who won the football match last night?", "en"),
        ("Can you recommend a good pizza recipe?", "en"),
        ("tell me a joke", "en"),
        ("今天天气怎么样", "zh"),
        ("你会唱歌吗", "zh"),
        ("", "en"),
    ],
)
async def test_unrelated_questions_get_no_answer(
    answerer: KnowledgeAnswerer, question: str, language: str
) -> None:
    answer = await answerer.answer(_request(question, language=language))

    assert answer.text is None
    assert answer.sources == ()


async def test_cannot_handle_answers_and_chitchat_does_not(answerer: KnowledgeAnswerer) -> None:
    question = "is shipping free on big orders?"
    handled = await answerer.answer(_request(question, kind="cannot_handle"))
    chitchat = await answerer.answer(_request(question, kind="chitchat"))

    assert handled.sources == ("shipping.md#Shipping › Shipping costs",)
    assert chitchat.text is None


async def test_empty_or_missing_directory(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / "missing"):
        answerer = KnowledgeAnswerer(KnowledgeBase.from_directory(path))
        assert len(answerer.knowledge) == 0
        assert (await answerer.answer(_request("how long do refunds take"))).text is None


async def test_bad_files_are_skipped_with_a_warning(
    knowledge_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (knowledge_dir / "latin1.md").write_bytes(
        "# Remboursement\n\nDélai de 5 jours.".encode("latin-1")
    )
    (knowledge_dir / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (knowledge_dir / "front.md").write_text("---\nlang: [zh\n---\n# Refund timing\n\nNever.\n")
    (knowledge_dir / "open.md").write_text("---\nlang: zh\n# Refund timing\n\nNever.\n")

    with caplog.at_level(logging.WARNING, logger="bot.knowledge"):
        answerer = KnowledgeAnswerer(KnowledgeBase.from_directory(knowledge_dir))

    warned = sorted(Path(str(r.args[0])).name for r in caplog.records if isinstance(r.args, tuple))
    assert warned == ["front.md", "image.md", "latin1.md", "open.md"]
    answer = await answerer.answer(_request("how long does a refund take"))
    assert answer.sources == ("policies/returns.md#Returns › Refund timing",)


def test_excerpt_stops_at_a_sentence() -> None:
    sentence = "Refunds are issued within five business days of receiving the parcel. "
    text = sentence * 12

    short = excerpt(text)

    assert len(short) <= 600
    assert short.endswith("parcel.")
    assert excerpt("word " * 200).endswith("…")
    assert excerpt("退款会在五个工作日内退回。" * 60).endswith("。")


def test_tokens() -> None:
    assert tokenize("Refunds refunded shipping parcels' deliveries") == [
        "refund",
        "refund",
        "ship",
        "parcel",
        "delivery",
    ]
    assert tokenize("退款时间") == ["退", "款", "时", "间", "退款", "款时", "时间"]
    assert tokenize("erase erased erasing fee") == ["eras", "eras", "eras", "fee"]


async def test_fifty_sections_rank_the_numbered_one(tmp_path: Path) -> None:
    sections = (
        f"## Question {i}\n\nWarranty claim {i} covers repair option {i}. " + "Lorem ipsum. " * 40
        for i in range(50)
    )
    (tmp_path / "faq.md").write_text("\n".join(sections))
    answerer = KnowledgeAnswerer(KnowledgeBase.from_directory(tmp_path))
    requests = [_request(f"how do I make a warranty claim for repair {i}") for i in range(20)]

    answers = [await answerer.answer(request) for request in requests]

    assert len(answerer.knowledge) == 50
    assert [a.sources for a in answers] == [(f"faq.md#Question {i}",) for i in range(20)]


def test_answers_are_reflowed_into_sentences() -> None:
    wrapped = "Standard shipping takes 3 to 5\nbusiness days. Express arrives\nthe next day."
    listed = "Steps:\n\n- pack the item\n- print the label  \nthen drop it off"

    assert (
        reflow(wrapped)
        == "Standard shipping takes 3 to 5 business days. Express arrives the next day."
    )
    assert reflow(listed) == "Steps:\n\n- pack the item\n- print the label\nthen drop it off"
    assert reflow("标准配送需要 3 到 5\n个工作日。下午 2 点前下单，\n次日送达。") == (
        "标准配送需要 3 到 5 个工作日。下午 2 点前下单，次日送达。"
    )


async def test_the_answer_has_no_hard_line_breaks(answerer: KnowledgeAnswerer) -> None:
    answer = await answerer.answer(_request("how long does a refund take"))

    assert answer.text is not None
    assert "\n" not in answer.text
    assert "payment method within 5 business days" in answer.text


class CountingEmbedder:
    """kefu's English encoder, counting the passages it embeds."""

    def __init__(self) -> None:
        self.passages = 0
        [self.embedder] = [e for e in default_embedders() if e.languages == {"en"}]

    def as_embedder(self) -> Embedder:
        def passage(text: str) -> np.ndarray:
            self.passages += 1
            return self.embedder.passage(text)

        return Embedder(
            name=self.embedder.name,
            query=self.embedder.query,
            passage=passage,
            languages=self.embedder.languages,
        )


async def test_meaning_ranks_the_section_that_answers(knowledge_dir: Path, tmp_path: Path) -> None:
    words_only = KnowledgeBase.from_directory(knowledge_dir)
    with_meaning = KnowledgeBase.from_directory(knowledge_dir)
    with_meaning.with_vectors(default_embedders(), cache_dir=tmp_path / "cache")
    question = "can I get my money back for a returned parcel and how quickly"

    [best] = with_meaning.search(question, limit=1)

    assert best.reference == "policies/returns.md#Returns › Refund timing"
    assert with_meaning.ranks_by_meaning and not words_only.ranks_by_meaning
    off_topic = KnowledgeAnswerer(with_meaning)
    assert (await off_topic.answer(_request("Who won the football match last night?"))).text is None


def test_section_vectors_are_cached_by_content(knowledge_dir: Path, tmp_path: Path) -> None:
    counting = CountingEmbedder()
    cache = tmp_path / "cache"
    first = KnowledgeBase.from_directory(knowledge_dir).with_vectors(
        [counting.as_embedder()], cache_dir=cache
    )
    first.prepare()
    computed = counting.passages
    KnowledgeBase.from_directory(knowledge_dir).with_vectors(
        [counting.as_embedder()], cache_dir=cache
    ).prepare()
    (knowledge_dir / "account.md").write_text(
        ACCOUNT_EN + "\n## Gift cards\n\nThey never expire.\n"
    )
    KnowledgeBase.from_directory(knowledge_dir).with_vectors(
        [counting.as_embedder()], cache_dir=cache
    ).prepare()

    assert computed > 0  # every English section's text, heading and sentences
    # Cached once; the change recomputes all (the new section: text, heading, one sentence).
    assert counting.passages == 2 * computed + 3
    assert len(list(cache.glob("knowledge-*.npz"))) == 2


FAQ_EN = """# FAQ

## Can I pay on delivery?

No, cash on delivery is not offered; pay online with a card or a wallet.

## Do you gift-wrap?

Yes, tick "gift wrap" at checkout; it costs 5 yuan.
"""

FAQ_ZH = """# 常见问题

## 可以货到付款吗？

不支持货到付款，请用银行卡或钱包在线支付。

## 可以包装成礼物吗？

可以，结账时勾选“礼品包装”，每单 5 元。
"""


def test_a_translated_section_lends_its_wording(tmp_path: Path) -> None:
    root = tmp_path / "knowledge"
    root.mkdir()
    (root / "faq.md").write_text(FAQ_EN)
    (root / "faq.zh.md").write_text(FAQ_ZH)
    (root / "notes.zh.md").write_text("# 备注\n\n## 营业时间\n\n每天 9 点到 21 点。\n")
    [chinese] = [e for e in default_embedders() if e.languages == {"zh"}]
    embedded: list[str] = []

    def passage(text: str) -> np.ndarray:
        embedded.append(text)
        return chinese.passage(text)

    recording = Embedder(
        name=chinese.name,
        query=chinese.query,
        passage=passage,
        languages=chinese.languages,
        also_reads=chinese.also_reads,
    )
    base = KnowledgeBase.from_directory(root)
    vectors = base.with_vectors([recording], cache_dir=None)
    question = "送货上门的时候给现金行吗"
    scores = vectors.similarity(question, "zh")
    alone = KnowledgeBase.from_directory(root).with_vectors([recording], cache_dir=None)
    alone._translations[:] = -1  # the same sections with no translation known

    assert "Can I pay on delivery?" in embedded  # English sections are read as translations
    assert not np.allclose(scores, alone.similarity(question, "zh"))
    [best] = base.search(question + "，货到付款", limit=1)
    assert best.reference == "faq.zh.md#常见问题 › 可以货到付款吗？"


PAYMENT_EN = """# Payment

## Can I pay on delivery?
<!-- questions:
- Do you offer COD?
- Can I hand the courier cash?
-->
<!-- Checked with the carriers in May. -->
No, pay online with a card or a wallet.

## Do you gift-wrap?
<!-- questions: Can you wrap it as a present? | Is there a gift box? -->
Yes, tick "gift wrap" at checkout; it costs 5 yuan.

## Which cards do you take?
Visa, Mastercard and UnionPay cards.

## Notes
<!-- questions: Nothing but a comment here -->
"""


def test_an_authors_questions_are_searched_and_never_quoted(tmp_path: Path) -> None:
    (tmp_path / "payment.md").write_text(PAYMENT_EN)
    base = KnowledgeBase.from_directory(tmp_path)

    # "COD" is only in the author's questions; a section that is only a comment is none.
    [cod] = base.search("COD", limit=1)
    [gift] = base.search("is there a gift box", limit=1)

    assert len(base) == 3
    assert cod.reference == "payment.md#Payment › Can I pay on delivery?"
    assert cod.text == "No, pay online with a card or a wallet."
    assert gift.text == 'Yes, tick "gift wrap" at checkout; it costs 5 yuan.'


def test_an_authors_question_is_a_view_of_its_section(tmp_path: Path) -> None:
    with_questions, without = tmp_path / "with", tmp_path / "without"
    with_questions.mkdir()
    without.mkdir()
    (with_questions / "payment.md").write_text(PAYMENT_EN)
    (without / "payment.md").write_text(PAYMENT_EN.replace("<!-- questions", "<!-- notes"))
    [english] = [e for e in default_embedders() if e.languages == {"en"}]
    question = "Can I hand the courier cash?"

    scores = [
        KnowledgeBase.from_directory(root)
        .with_vectors([english], cache_dir=None)
        .similarity(question, "en")
        for root in (with_questions, without)
    ]

    # The first section's own question is now one of its wordings: it gains on the others.
    assert scores[0][0] - scores[0][1:].max() > scores[1][0] - scores[1][1:].max()


def test_addresses_links_and_order_numbers_are_no_search_words() -> None:
    """A customer's e-mail address (the answer to a question) is no shop question, and an
    order number inside a question no word of it."""
    assert tokenize("alice@example.com") == []
    assert tokenize("see https://shop.example/returns today") == ["see", "today"]
    assert tokenize("refund for KF-20417 or kf20417, call 400-123-4567") == ["refund", "call"]
    assert tokenize("发邮件至support@kefu-shop.example，或拨打电话") == tokenize(
        "发邮件至，或拨打电话"
    )
    base = KnowledgeBase.from_directory(REPO / "knowledge")
    assert not base.knows("alice@example.com", language="en", min_relevance=0.9, min_coverage=0.2)


@pytest.fixture(scope="module")
def shop() -> KnowledgeBase:
    """The reference shop's knowledge, words only (no encoder)."""
    return KnowledgeBase.from_directory(REPO / "knowledge")


def _knows(base: KnowledgeBase, question: str) -> bool:
    return base.knows(question, min_relevance=0.9, min_coverage=0.2)


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("whats the adress i send my retrun to", "whats the address i send my return to"),
        (
            "lost my reciept, can i still get a warrenty repair",
            "lost my receipt, can i still get a warranty repair",
        ),
        ("will my card be debited immediately", "will my card be debited immediately"),
        ("zzkj fffq wert", "zzkj fffq wert"),  # keyboard mashing is no typing with typos
        ("我的帐号以经被锁了", "我的账号已经被锁了"),
        ("手机号以被注册了，可以发到美国吗", "手机号已被注册了，可以发到美国吗"),
        ("付款的时候visa一直被decline", "付款的时候visa一直被拒"),
        ("newsletter怎么退订", "新闻邮件怎么退订"),
        ("Hi there, do you ship to Australia? Thanks a lot!", "do you ship to Australia?"),
        ("亲，在吗？退款要多久，谢谢", "退款要多久"),
    ],
)
def test_a_chat_message_is_read_as_meant(shop: KnowledgeBase, typed: str, read: str) -> None:
    """Typos towards the base's own words (an inflected word the dictionary lacks is no
    typo), Chinese homophone typos, English shop words of a Chinese message, greetings and
    thanks: the search reads the question as the customer meant it."""
    assert shop.prepare(typed) == read


@pytest.mark.parametrize(
    ("question", "section"),
    [
        ("whats the adress i send my retrun to", "How do I return an item?"),
        ("returned the shoes 2 weeks ago and the money still isnt on my visa statement", None),
        (
            "Hi, good afternoon. I ordered a lamp and a blanket for my grandmother's birthday "
            "last Tuesday, she lives in Chengdu. Anyway, can I still change the delivery address?",
            "Can I change the delivery address?",
        ),
        ("my order KF-55120 hasnt moved for days where is it", None),
        ("帐号不想用了，怎么彻底删掉", None),
    ],
)
def test_chat_style_questions_are_known(
    shop: KnowledgeBase, question: str, section: str | None
) -> None:
    """Typos, contractions typed without their apostrophe, order numbers, and a question
    after a story: the base knows the question (and, for a rambling message, ranks by its
    question clause)."""
    assert _knows(shop, question)
    if section is not None:
        [best] = shop.search(question, limit=1, min_relevance=0.9, min_coverage=0.2)
        assert best.title.endswith(section)


@pytest.mark.parametrize(
    "message",
    [
        "who won the football match yesterday",  # "won" is no "won't"
        "tell me something funny",
        "how do i cook rice in a pan",
        "附近有什么好吃的餐厅",
        "给我讲个笑话吧",
        "KF-20417",
        "my number is 138 0013 8000",
        "thanks, bye",
    ],
)
def test_chat_words_do_not_make_an_unrelated_message_known(
    shop: KnowledgeBase, message: str
) -> None:
    """Fillers, contractions, function characters and values (order and phone numbers) are no
    words of a question: an off-topic message or a value typed as an answer stays unknown."""
    assert not _knows(shop, message)


def test_a_closest_question_is_read_word_piece_by_word_piece(tmp_path: Path) -> None:
    (tmp_path / "payment.md").write_text(PAYMENT_EN)
    [english] = [e for e in default_embedders() if e.languages == {"en"}]
    cache = tmp_path / "cache"
    vectors = KnowledgeBase.from_directory(tmp_path).with_vectors([english], cache_dir=cache)
    [views] = vectors._load()
    [cached] = (
        KnowledgeBase.from_directory(tmp_path).with_vectors([english], cache_dir=cache)._load()
    )
    assert english.pieces is not None
    _, pieces, words = english.pieces("do you offer COD")

    closest = views.question_interaction(pieces[[w.isalnum() for w in words]])

    # Every heading and author wording has its pieces; "Do you offer COD?" is the first
    # section's; the cache gives them back.
    assert sorted(set(views.question_piece_owners)) == [0, 1, 2]
    assert int(np.argmax(closest)) == 0
    assert np.array_equal(cached.question_pieces, views.question_pieces)
    assert np.array_equal(cached.question_piece_starts, views.question_piece_starts)


CLOSE_CALLS = """# Help

## How long does a refund take?
Refunds reach your card within 5 working days of the return arriving.

## How long does an exchange take?
The new size ships within 2 working days of the return arriving.

## Do you sell gift cards?
Yes, gift cards of 50, 100 and 200 yuan, in the shop's app.
"""


async def test_a_close_runner_up_is_offered_as_its_question(
    knowledge_dir: Path, tmp_path: Path
) -> None:
    (knowledge_dir / "help.md").write_text(CLOSE_CALLS)
    base = KnowledgeBase.from_directory(knowledge_dir)
    words_only = KnowledgeAnswerer(KnowledgeBase.from_directory(knowledge_dir))
    base.with_vectors(default_embedders(), cache_dir=tmp_path / "cache")
    answerer = KnowledgeAnswerer(base)

    question = "how long do refund or exchange take after the return"
    unsure = await answerer.answer(_request(question))
    sure = await answerer.answer(_request("can I buy a gift card for my sister"))

    # The ranking can hardly tell the sections about time after a return apart: the close
    # runners-up are buttons whose payload is their question, as the customer would type it; a
    # clear answer offers nothing, and by words alone (another scale) nothing is offered either.
    assert unsure.sources and unsure.buttons
    offered = {b.title for b in unsure.buttons}
    timing = {"How long does a refund take?", "How long does an exchange take?", "Refund timing"}
    assert offered <= timing
    assert not any(unsure.sources[0].endswith(title) for title in offered)
    assert all(b.payload == b.title for b in unsure.buttons)
    assert sure.sources == ("help.md#Help › Do you sell gift cards?",) and not sure.buttons
    assert not (
        await words_only.answer(_request("how long do refund or exchange take after the return"))
    ).buttons
