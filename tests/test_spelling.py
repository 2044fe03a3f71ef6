"""What the classifier reads: typos corrected towards the training words, and English shop
words in a Chinese message put in Chinese; the customer's own text is kept elsewhere."""

from __future__ import annotations

from collections import Counter

import pytest

from bot.understanding.code_switch import in_chinese
from bot.understanding.spelling import SpellingCorrector, edit_distance

EXAMPLES = [
    "I want to return my package",
    "where is my order",
    "please cancel the order",
    "I need a refund for the parcel",
    "I'd like to talk to a human",
]


@pytest.fixture(scope="module")
def speller() -> SpellingCorrector:
    return SpellingCorrector.from_texts(EXAMPLES)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("i wnat to retrun my pakage", "i want to return my package"),
        ("wher is my ordr", "where is my order"),
        ("refnud please", "refund please"),
        ("talk to a huamn", "talk to a human"),
    ],
)
def test_typos_become_the_training_words(
    speller: SpellingCorrector, typed: str, meant: str
) -> None:
    assert speller.correct(typed) == meant


@pytest.mark.parametrize(
    "text",
    [
        "my email is alice@example.com",  # addresses and codes are no words
        "order KF-10001 please",
        "Flat 3, 22 Huaihai Road",  # real English words the examples lack stay
        "a pizza place nearby",
        "pls ok lol",  # too short to tell a typo from a word
        "my card was debited twice",  # an inflection the dictionary lacks is no typo
        "我的订单",
    ],
)
def test_known_words_codes_and_short_words_stay(speller: SpellingCorrector, text: str) -> None:
    assert speller.correct(text) == text


@pytest.mark.parametrize("mashed", ["zzkj fffq wert", "qwzx vbnm plok", "xkcdq zzkj wnat"])
def test_keyboard_mashing_is_not_corrected_into_words(
    speller: SpellingCorrector, mashed: str
) -> None:
    assert speller.correct(mashed) == mashed


def test_a_name_the_examples_lack_does_not_stop_a_correction(speller: SpellingCorrector) -> None:
    assert speller.correct("Xqorvan wnat a refnud") == "Xqorvan want a refund"


def test_edited_texts_are_taken_as_written_from_one_use() -> None:
    """Intent examples may keep a typo once on purpose; a knowledge base's texts do not."""
    texts = ["We take UnionPay", "UnionPay debit cards", "Use your unionpayy card"]
    assert SpellingCorrector.from_texts(texts).correct_word("unionpayy") == "unionpay"
    assert (
        SpellingCorrector.from_texts(texts, known_from=1).correct_word("unionpayy") == "unionpayy"
    )


def test_the_most_frequent_of_equally_close_words_wins() -> None:
    speller = SpellingCorrector(Counter({"parcel": 5, "parcem": 1}), dictionary=frozenset())
    assert speller.correct_word("parcek") == "parcel"


def test_a_swap_of_neighbouring_letters_is_one_edit() -> None:
    assert edit_distance("retrun", "return") == 1
    assert edit_distance("wnat", "want") == 1
    assert edit_distance("pakage", "package") == 1
    assert edit_distance("abc", "xyz") == 3


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("refund 要多久", "退款 要多久"),
        ("我的 packages 到哪了", "我的 包裹 到哪了"),
        ("我想 cancel 我的 Order", "我想 取消 我的 订单"),
        ("customer service 电话多少", "客服 电话多少"),
    ],
)
def test_english_shop_words_in_chinese_messages_are_read_in_chinese(text: str, read: str) -> None:
    assert in_chinese(text) == read


def test_english_messages_keep_their_words() -> None:
    assert in_chinese("where is my refund, order KF-10001") == "where is my refund, order KF-10001"


def test_a_typo_kept_once_in_the_examples_is_corrected_too() -> None:
    texts = [*EXAMPLES, "cancel it", "i want to cancle my order"]
    speller = SpellingCorrector.from_texts(texts)
    assert speller.correct("pls cancle my ordr") == "pls cancel my order"
