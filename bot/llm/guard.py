"""Guard rails around the model: what a customer may not make it do, checked in code.

A prompt asks the model to keep its rules; these checks do not trust that it did. A message
that tries to override the instructions (in English or Chinese, including fake ``system:``
context) is not sent to the model at all. An answer that repeats the instructions or promises
a refund, discount or compensation the shop's passages do not state is replaced, and every
answer is cut to a bounded length.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

_INJECTION = re.compile(
    "|".join(
        [
            # English: overriding, revealing, role play, fake context
            r"\b(ignore|disregard|forget|override|bypass)\b.{0,30}\b(instructions?|rules?|prompts?"
            r"|guidelines|polic(y|ies)|directions)\b",
            r"\b(reveal|show|print|repeat|output|display|tell me|give me|what (are|is|were)|leak"
            r"|dump|translate|summari[sz]e)\b.{0,30}\b(system|initial|hidden|original|developer"
            r"|your)\s+(prompt|instructions?|rules|message)",
            r"\b(system|developer)\s+prompt\b",
            r"\byou are now (a|an|my|the new)\b",
            r"\byou are no longer (a|an|bound|restricted|limited)\b",
            r"\b(pretend|act as if) (you are|to be)\b",
            r"\b(developer|god|admin|debug|dan) mode\b",
            r"\bjailbreak",
            r"\b(have|with) no (rules|restrictions|limits|filters)\b",
            r"\bnew (rules?|instructions?)\s*[:：]",
            r"(^|\n)\s*[\[<(#*]*\s*(system|developer|assistant|admin)\s*[\]>)#*]*\s*[:：]",
            r"<\|?(im_start|im_end|system|endoftext)\|?>",
            r"\[/?(inst|sys|system)\]",
            r"<</?sys>>",
            # Chinese: 忽略指令、泄露提示词、角色扮演、伪造系统消息
            r"(忽略|无视|忘记|忘掉|不要理会|绕过).{0,12}(指令|指示|规则|提示词|设定|限制)",
            r"(显示|告诉我|输出|重复|透露|泄露|打印|给我看|说出|翻译).{0,12}(系统提示|提示词|系统指令"
            r"|你的指令|初始设定|你的规则|内部规则)",
            r"(^|\n)\s*[\[【(（]?\s*(系统|开发者|管理员)(消息|指令|通知)?\s*[\]】)）]?\s*[:：]",
            r"你现在(是|成为|变成|扮演)(?![否不])",
            r"(假装你是|假装成|角色扮演)",
            r"(开发者|上帝|管理员|调试)模式",
            r"(从现在开始|从现在起)[，,]?.{0,6}你(要|必须|只能|得|就是)",
            r"新(的)?规则\s*[:：]",
        ]
    ),
    re.IGNORECASE,
)

_PROMISE = re.compile(
    "|".join(
        [
            r"\b(i|we)\s*('ll|'ve|will|would|can|could|have|am|are|shall)?\s*"
            r"(go ahead and |happily |gladly )?(issue|give|grant|offer|process|send|apply|add"
            r"|waive|credit|refund|compensate|approve)\w*\b.{0,30}\b(refund|discount|coupon"
            r"|voucher|credit|compensation|gift card|free|money back|reimburse)",
            r"\b(i|we)\s*('ll|'ve|will|can|have|am going to|are going to)?\s*(refund|reimburse"
            r"|compensate)(d|ed)?\s+(you|your|the)\b",
            r"\b(refund|discount|coupon|voucher|credit|compensation)\b.{0,20}\b(has been"
            r"|have been|is being|will be|is now)\s+(issued|applied|processed|sent|granted"
            r"|given|approved|added)",
            r"\byou\s*('ll| will| are going to)\s*(get|receive|be given)\b.{0,20}\b(refund"
            r"|discount|coupon|voucher|compensation|money back|for free)",
            r"\b\d{1,3}\s?%\s*(off|discount)",
            r"\b(discount|coupon|promo|voucher)\s+code\b",
            r"(我|我们)(会|将|已|已经|马上|立即|现在|可以|能)?(为您|给您|帮您|替您)?(全额|直接|立即)?(退款|退钱|补偿|赔偿|免单|打折|返现)",
            r"(给|为|送|发)(您|你)(一张|一个|一份)?\S{0,6}(优惠券|代金券|折扣|红包|补偿|赔偿金)",
            r"\d+(\.\d)?\s*折",
            r"(优惠码|折扣码|兑换码)",
        ]
    ),
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9']+|[\u4e00-\u9fff]", re.IGNORECASE)
LEAK_NGRAM = 6
"""An answer sharing this many consecutive words with the instructions is taken as a leak."""


def is_injection(text: str) -> bool:
    """True when ``text`` tries to override, reveal or replace the assistant's instructions."""
    return _INJECTION.search(text) is not None


def promises(answer: str, passages: Iterable[str] = ()) -> bool:
    """True when ``answer`` promises a refund, discount or compensation the passages don't state."""
    sources = " ".join(passages).lower()
    return any(match.group().lower() not in sources for match in _PROMISE.finditer(answer))


def leaks(answer: str, instructions: str) -> bool:
    """True when ``answer`` repeats a run of :data:`LEAK_NGRAM` words of ``instructions``."""
    secret = _instruction_ngrams(instructions)
    return bool(secret) and not secret.isdisjoint(_ngrams(answer))


@functools.lru_cache(maxsize=8)
def _instruction_ngrams(instructions: str) -> frozenset[tuple[str, ...]]:
    """The instructions' n-grams: the same text every turn, so computed once."""
    return frozenset(_ngrams(instructions))


def _ngrams(text: str) -> set[tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(text)]
    return {tuple(words[i : i + LEAK_NGRAM]) for i in range(len(words) - LEAK_NGRAM + 1)}
