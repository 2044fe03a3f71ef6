"""From a parsed message and the dialogue's state to commands, offline and deterministically.

The order of precedence: button payloads; explicit requests to stop or to reach a human;
the answer to a pending question; a correction of an earlier answer; a question asked
instead of that answer (answered, then the question is asked again); a task asked for in one
clause of a message that reads as a question as a whole; a flow to start (while a question is
pending, only a confident one); small talk; and last a question for the knowledge base (or
the LLM, when one is plugged in). Before the rules, a message that names what a task needs (an
order number) or asks for a task ("I want to…") is read as that task where the classifier
finds it likely.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import cached_property

from bot.dialogue import commands as cmd
from bot.dialogue.stack import Frame, collecting, top_user_frame, user_frames
from bot.dialogue.turn import Turn
from bot.domain import SlotDefinition
from bot.flows.conditions import compile_condition
from bot.flows.model import Flow
from bot.interpreter import Parse, set_slots_of
from bot.understanding.values import SlotValue, parse_slot_value

DIGRESSION_CONFIDENCE = 0.6
"""An intent this confident interrupts a pending question instead of answering it."""
SWITCH_CONFIDENCE = 0.8
"""A question asked during a pending question starts a new flow only this confidently."""
ANSWER_INTENT_CONFIDENCE = 0.25
"""How likely an answerable intent must be for a question during a pending one to get it."""
SURE_ANSWER_CONFIDENCE = 0.5
"""Below this, a question during a pending one goes to the knowledge base rather than to the
response of an intent it only loosely resembles."""
CLARIFY_MARGIN = 0.08
"""Two flows whose intents score closer than this, both unsure, make the bot ask which."""
CLAUSE_TASK_CONFIDENCE = 0.35
"""How likely the flow intent of one clause that asks for something ("I want to…") must be
to start that flow beside a question (a clause that only states something: SWITCH_CONFIDENCE,
so that "it arrived yesterday, thanks" stays a thank-you)."""
REQUEST_TASK_CONFIDENCE = 0.25
"""How likely a flow's intent must be, behind a question's, for a request to start the flow."""
ENTITY_TASK_CONFIDENCE = 0.15
"""How likely a runner-up flow's intent must be for the entity it collects to choose it."""
_REQUEST = re.compile(
    r"\b(?:i|we)\s*(?:'d|would)\s+like\b|\b(?:i|we)\s+(?:just\s+|only\s+|really\s+)?"
    r"(?:want|wanna|need|wish)\b|"
    r"\b(?:please|pls|plz|help me|get me|connect me|put me through|transfer me|"
    r"let me (?:talk|speak))\b|我要|我想|帮我|给我|请帮|麻烦|我需要",
    re.IGNORECASE,
)
"""Words that make a message a request ("I want to…", "我要…") rather than a question."""
_POLITE_REQUEST = re.compile(
    r"^\W*(?:\w+\W+){0,3}?(?:can|could|would|will) (?:you|u) (?:please |pls )?"
    r"(?!tell\b|explain\b)\w+ me\b|"
    r"(?:能|可以|可不可以|能不能|能否|麻烦)[^，,。？?]{0,10}(?:发我|发给我|给我|帮我|寄给我)",
    re.IGNORECASE,
)
"""A request asked as a question ("could you send me the invoice?", "这个订单的发票能发我一下
吗"): a request all the same."""
_ASKING = re.compile(
    r"\b(?:know|ask|find out|understand|learn|tell|explain)\b|"
    r"想知道|想了解|想问|了解一下|问一下|问问|告诉我|介绍",
    re.IGNORECASE,
)
"""A request to be told something ("I'd like to know…", "我想了解…") is a question."""
_CHANGE_OF_MIND = re.compile(
    r"^\W*(?:(?:hmm+|um+|oh|well|wait|sorry)\W+)*(?:actually|no|nope|nah|instead|scratch that)\b|"
    r"\binstead\b|\bon second thought\b|其实|不对|我是想|换成|改成",
    re.IGNORECASE,
)
"""Words that take back the request being served."""

_CANCEL = {
    "cancel", "stop", "never mind", "nevermind", "forget it", "quit", "abort", "cancel that",
    "stop that", "i changed my mind", "changed my mind", "forget about it", "don t bother",
    "leave it", "skip it", "no need", "not anymore", "let s stop", "let s forget it",
    "取消", "算了", "不用了", "不要了", "停止", "退出", "取消吧", "算了吧", "不办了",
    "不改了", "不查了", "不退了", "不弄了", "不需要了", "没事了", "先不用了", "不用麻烦了",
    "nvm", "never mind then", "forget that", "don t worry about it", "no worries", "scrap that",
    "drop it", "not needed", "算了算了", "不用了不用了", "不搞了", "不办了吧",
    "先不弄了", "先不改了", "不要弄了", "别弄了", "算啦",
}  # fmt: skip
_CJK_STOP = re.compile(
    r"(?:不用|不要|不想|不需要|先不|别|不(?![行对好是在能会够]))再?[\u4e00-\u9fff]{1,3}了吧?"
)
"""Chinese says "no more X" with any verb: 不用推荐了, 不查了, 别弄了 (a whole clause)."""
_CANCEL_FILLERS = {
    "ok", "okay", "oh", "ah", "hmm", "well", "actually", "please", "thanks", "no", "nah",
    "好", "好吧", "哦", "嗯", "那", "那就", "还是", "谢谢",
    "ugh", "meh", "oops", "hm", "erm", "um", "sorry", "just", "then",
    "唉", "哎", "哎呀", "呃", "额", "啊", "哈", "呀", "wait", "hold on", "hang on",
    "wait a sec", "等等", "等一下", "等下", "哦等等",
}  # fmt: skip
"""Words that may stand beside a cancel phrase ("ok never mind", "嗯，算了，不改了")."""
_LATER = re.compile(
    r"\b(?:later|another time|some other time|tomorrow|myself|on my own|not worth|"
    r"(?:don t|do not|no longer) need|is fine|are fine|it s fine|as it is|i ll keep|keep it|"
    r"too much (?:hassle|trouble|effort)|not important|doesn t matter|"
    r"(?:will|ll|can) (?:sort|do|handle|deal with|take care of|figure out) (?:it|that|this)|"
    r"(?:just )?(?:browsing|looking|looking around|checking)|i ll just|i will just|"
    r"sorted|resolved|solved|fixed|found it|anyway|anyways)\b|"
    r"随便看看|只是看看|我直接|解决了|搞定了|弄好了|找到了|"
    r"回头|以后|改天|晚点|再说|自己再?(?:看看|逛逛)|随便逛逛|自己来|自己处理|没必要|不值得|太麻烦|"
    r"就这样|先这样|"
    r"挺好|不用改|保持原样|留着|不重要|无所谓|没错|没问题|是对的|我?(?:搞|弄|看)错了",
    re.IGNORECASE,
)
"""A clause that puts the task off or says why it is not needed ("I'll sort it out later",
"the old one is fine", "我自己再看看"): beside a stop phrase it only says why the customer
stops."""
_CJK_PHRASES = sorted(
    (p for p in _CANCEL | _CANCEL_FILLERS if not p.isascii()), key=len, reverse=True
)
_REFUSALS = {"no", "nah", "nope", "no thanks", "不", "不了", "不要", "不用"}
"""A refusal that, beside a reason to stop ("nah, it's fine"), stops too."""
_CJK_FILLERS = sorted((p for p in _CANCEL_FILLERS if not p.isascii()), key=len, reverse=True)
_CLAUSE = re.compile(r"[,，.。!！?？;；、\n]+|\s+(?:and|then)\s+")
_HUMAN = {
    "human", "agent", "a human", "an agent", "real person", "a real person", "talk to a human",
    "speak to a human", "talk to an agent", "speak to an agent", "talk to a person",
    "speak to a person", "human please", "agent please", "operator", "live agent",
    "人工", "转人工", "人工客服", "真人", "找人工", "转人工客服", "我要人工", "人工服务",
}  # fmt: skip
_HUMAN_WANTED = re.compile(
    r"\b(?:a human|a real person|an actual person|a person|an? (?:live |real )?agent|"
    r"someone real|a real human|an operator|(?:an? )?(?:customer service |support |sales )?"
    r"(?:representative|rep)|a member of (?:staff|your team|the team)|"
    r"someone from (?:your|the) (?:team|support))\b|人工|真人|客服专员|工作人员",
    re.IGNORECASE,
)
"""A person named in a request ("I want to talk to a real person", "我要找人工处理"): the
request wins over a yes/no answer or a flow that its other words resemble."""
_PUNCTUATION = re.compile(r"[\s\W_]+", re.UNICODE)


def normalize_phrase(text: str) -> str:
    """Lower-case, NFKC, punctuation folded to single spaces: for matching fixed phrases."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return _PUNCTUATION.sub(" ", folded).strip()


def is_cancel(text: str) -> bool:
    """Whether ``text`` only says to stop: every clause a stop phrase or a filler word."""
    said = [normalize_phrase(c) for c in _CLAUSE.split(text.lower())]
    clauses = [c for c in map(_without_fillers, said) if c]
    stops = [c for c in clauses if _cancel_clause(c)]
    if not stops and any(c in _REFUSALS for c in said):
        stops = [c for c in clauses if _LATER.search(c)]  # "nah, it's fine, I'll keep it"
    return bool(stops) and all(c in stops or c in _REFUSALS or _LATER.search(c) for c in clauses)


def _without_fillers(clause: str) -> str:
    """The clause without filler words at its ends ("ok", "hold on", "嗯"); empty when it is
    nothing but fillers ("哦等等")."""
    words = clause.split()
    changed = True
    while words and changed:
        changed = False
        for size in (2, 1):  # "hold on": a filler of two words
            if len(words) >= size and " ".join(words[:size]) in _CANCEL_FILLERS:
                words, changed = words[size:], True
            if len(words) >= size and " ".join(words[-size:]) in _CANCEL_FILLERS:
                words, changed = words[:-size], True
    rest = " ".join(words)
    while rest and not rest.isascii():
        filler = next((p for p in _CJK_FILLERS if rest.startswith(p)), None)
        if filler is None:
            break
        rest = rest[len(filler) :].strip()
    return rest if rest else ""


def _cancel_clause(clause: str) -> bool:
    """A stop phrase (fillers already trimmed); Chinese phrases may run together."""
    if clause in _CANCEL:
        return True
    rest, found = clause, False
    while rest and not rest.isascii():  # 算了不改了: stop phrases and fillers back to back
        prefix = next((p for p in _CJK_PHRASES if rest.startswith(p)), None)
        stop = _CJK_STOP.match(rest) if prefix is None or prefix not in _CANCEL else None
        if stop is not None:
            prefix = stop.group()
        elif prefix is None:
            return False
        found = found or prefix in _CANCEL or stop is not None
        rest = rest[len(prefix) :].strip()
    return found and not rest


def generate_commands(
    turn: Turn, parse: Parse, *, synonyms: Mapping[str, str], command: str | None = None
) -> list[cmd.Command]:
    """The commands one message amounts to: those of the first rule in :data:`_RULES`
    that has an opinion (the module's docstring gives their order), else a search."""
    if command == "human":
        return [cmd.HumanHandoff()]
    if parse.unknown_payload:
        return [cmd.CannotHandle(reason="cannot_handle_not_supported")]
    if parse.set_slots:
        return [
            cmd.SetSlot(name, value)
            for name, value in parse.set_slots.items()
            if name in turn.domain.slots
        ]
    classified = parse.intent
    if collecting(turn.state.stack) is None:
        parse = _asked(turn, _requested(turn, _entity_led(turn, parse)))
    message = _Reading(turn, parse, synonyms)
    message.classified = classified
    for rule in _RULES:
        commands = rule(message)
        if commands is not None:
            return commands
    return [cmd.Search()]


class _Reading:
    """One typed message read against the dialogue's state: what the rules below ask of it,
    each part worked out once and only when a rule needs it."""

    def __init__(self, turn: Turn, parse: Parse, synonyms: Mapping[str, str]) -> None:
        self.turn = turn
        self.parse = parse
        self.synonyms = synonyms
        stack = turn.state.stack
        self.pending = collecting(stack)
        collect = self.pending.get("collect") if self.pending is not None else None
        self.pending_slot = turn.domain.slots.get(str(collect)) if self.pending else None
        self.active = top_user_frame(stack)
        self.confident = parse.intent is not None and parse.confidence >= DIGRESSION_CONFIDENCE
        self.classified = parse.intent
        """The classifier's own intent, before the rules that read a request or an entity."""

    @cached_property
    def typed_answer(self) -> SlotValue | None:
        """The message read as the answer to the pending question, if it can be one."""
        if self.pending is None or self.pending_slot is None:
            return None
        question = str(self.pending.get("utter"))
        return _answer(self.turn, self.parse, self.pending_slot, self.synonyms, question=question)

    @cached_property
    def typed_title(self) -> bool:
        """The message is the title of one of the pending question's buttons ("No, keep
        it"): an answer, even in words that would otherwise stop the flow."""
        if self.pending is None or self.pending_slot is None:
            return False
        question = str(self.pending.get("utter"))
        return _typed_button(self.turn, self.pending_slot, self.parse.text, question) is not None

    @cached_property
    def answer(self) -> SlotValue | None:
        """:attr:`typed_answer`, unless the message rather corrects an earlier answer
        ("actually my order is KF-2")."""
        answer = self.typed_answer
        if answer is not None and answer.source != "entity" and self.corrections:
            return None
        return answer

    @cached_property
    def candidates(self) -> list[Flow]:
        """The customer's flows the message may start, best first."""
        return _triggered_flows(self.turn, self.parse)

    @cached_property
    def new_flows(self) -> list[Flow]:
        """:attr:`candidates` that are not on the stack already."""
        stack = self.turn.state.stack
        return [f for f in self.candidates if not any(fr["flow_id"] == f.id for fr in stack)]

    @cached_property
    def corrections(self) -> dict[str, object]:
        """Slots the running flow collected that the message's entities change."""
        return _corrections(self.turn, self.parse, self.active)

    @cached_property
    def small_talk(self) -> bool:
        """The message's intent has a response of its own (``utter_<intent>``)."""
        return _is_small_talk(self.turn, self.parse)

    @cached_property
    def changes_mind(self) -> bool:
        """The customer takes back what they asked for and asks for another task, confidently
        ("actually no, I just want to know where KF-2 is"): what the message names goes with
        that task, not to the pending question ("actually it's KF-2" still answers it)."""
        text = self.parse.text
        return bool(
            self.confident
            and self.new_flows
            and _CHANGE_OF_MIND.search(text)
            and _REQUEST.search(text)
        )

    @cached_property
    def question(self) -> bool:
        """The message reads as a question rather than an answer."""
        return looks_like_question(self.parse.text)


def _human_or_cancel(m: _Reading) -> list[cmd.Command] | None:
    """An explicit request for a person (alone, or named in a request), or to stop the
    running task (a yes/no question's "no" answers it instead)."""
    text = m.parse.text
    if normalize_phrase(text) in _HUMAN or (_HUMAN_WANTED.search(text) and _REQUEST.search(text)):
        return [cmd.HumanHandoff()]
    if (
        is_cancel(m.parse.text)
        and m.active is not None
        and not _is_bool_answer(m.pending_slot, m.typed_answer)
        and not m.typed_title
    ):
        return [cmd.CancelFlow()]
    return None


def _pattern(m: _Reading) -> list[cmd.Command] | None:
    """A pattern's own ``nlu_trigger`` (restart, session start)."""
    pattern = _pattern_trigger(m.turn, m.parse)
    return [cmd.StartPattern(pattern)] if pattern is not None else None


def _answer_to_pending(m: _Reading) -> list[cmd.Command] | None:
    """The answer to the pending question, unless a confident intent rather starts a flow or
    is small talk (a typed or entity answer is an answer all the same)."""
    slot, answer = m.pending_slot, m.answer
    if slot is None or answer is None or m.changes_mind:
        return None
    typed = (
        slot.type in ("bool", "float", "categorical")
        or answer.source == "entity"
        or _takes_any_text(slot)
    )
    if typed or not (m.confident and (m.new_flows or m.small_talk)):
        return [
            cmd.SetSlot(slot.name, answer.value),
            *_entity_slots(m.turn, m.parse, skip={slot.name}),
        ]
    return None


def _correction(m: _Reading) -> list[cmd.Command] | None:
    """A new value for a slot the running flow already collected."""
    return [cmd.CorrectSlots(m.corrections)] if m.corrections else None


def _digression(m: _Reading) -> list[cmd.Command] | None:
    """A question while the bot waits for an answer is more often a digression than a new
    task: answer it (the pending question is asked again), unless a flow is sure. A question
    that no response, no flow and no running task covers ("is there a warranty on kettles?"
    read as a product question) is for the knowledge base."""
    if m.pending_slot is None or m.answer is not None or not m.question:
        return None
    faq = _answer_intent(m.turn, m.parse)
    if faq is not None and not (m.new_flows and m.parse.confidence >= SWITCH_CONFIDENCE):
        if dict(m.parse.ranking).get(faq, 0.0) < SURE_ANSWER_CONFIDENCE and not m.new_flows:
            return [cmd.Search()]  # a loose match: the knowledge base's own sections answer
        return [cmd.ChitChat(intent=faq)]
    if faq is None and not m.candidates and not m.small_talk and m.parse.intent is not None:
        return [cmd.Search()]
    return None


def _task_in_clause(m: _Reading) -> list[cmd.Command] | None:
    """A message of several clauses whose whole reads as a question or small talk, one clause
    of which asks for a task or confidently names one ("the earphones crackle, I want to
    return them, who pays the postage?"): the task starts, and a clause's question is answered
    first."""
    if m.pending_slot is not None or m.active is not None or not m.parse.clauses:
        return None
    if _starts_a_flow(m.turn, m.classified):
        return None  # the whole message asks for a task: _new_flow starts it
    tasks = [
        (confidence, flow)
        for clause, intent, confidence in m.parse.clauses
        if (flow := _flow_intent(m.turn, intent)) is not None
        and confidence >= (CLAUSE_TASK_CONFIDENCE if _REQUEST.search(clause) else SWITCH_CONFIDENCE)
    ]
    if not tasks:
        return None
    flow = max(tasks, key=lambda task: task[0])[1]
    answers = [
        intent
        for _, intent, confidence in m.parse.clauses
        if confidence >= SURE_ANSWER_CONFIDENCE and _answers(m.turn, intent)
    ]
    commands: list[cmd.Command] = [
        cmd.StartFlow(flow.id),
        *_prefill(m.turn, m.parse, flow, m.synonyms),
    ]
    return [*commands, cmd.ChitChat(intent=answers[0])] if answers else commands


def _new_flow(m: _Reading) -> list[cmd.Command] | None:
    """A flow to start (with what the message already answers), or which of several.

    While a question is pending, an unsure guess does not drop it."""
    flows = m.new_flows
    if not flows or (m.pending_slot is not None and not m.confident):
        return None
    if m.pending_slot is not None and _about_the_question(m, m.pending_slot, flows[0]):
        return [cmd.RejectValue(m.pending_slot.name, m.parse.text)]
    if _needs_clarification(m.turn, m.parse, flows):
        named = [f for f in flows[:3] if _names_a_choice(m, f)]
        if len(named) != 1:
            return [cmd.Clarify(tuple(f.id for f in flows[:3]))]
        flows = named  # "扣了我两次钱": the choice it names (charged twice) is that flow's
    commands = [cmd.StartFlow(flows[0].id), *_prefill(m.turn, m.parse, flows[0], m.synonyms)]
    aside = _aside_question(m, flows[0]) if m.pending_slot is None else None
    return [*commands, cmd.ChitChat(intent=aside)] if aside is not None else commands


def _aside_question(m: _Reading, flow: Flow) -> str | None:
    """A question asked beside the task in a clause of its own ("change the address of
    KF-10015, and also do you ship to Hong Kong?"): the intent that answers it, if sure."""
    triggers = {t.intent for t in flow.nlu_triggers}
    for clause, intent, confidence in m.parse.clauses:
        if (
            intent not in triggers
            and confidence >= SURE_ANSWER_CONFIDENCE
            and _answers(m.turn, intent)
            and looks_like_question(clause)
        ):
            return intent
    return None


def _names_a_choice(m: _Reading, flow: Flow) -> bool:
    """The message names one of the values of a choice ``flow`` will ask for."""
    return any(
        isinstance(c, cmd.SetSlot)
        and (slot := m.turn.domain.slots.get(c.name)) is not None
        and slot.type == "categorical"
        for c in _prefill(m.turn, m.parse, flow, m.synonyms)
    )


def _starts_a_flow(turn: Turn, intent: str | None) -> bool:
    """Whether ``intent`` is a trigger of one of the customer's flows."""
    return intent is not None and any(
        t.intent == intent for f in turn.flows.user_flows() for t in f.nlu_triggers
    )


def _about_the_question(m: _Reading, pending: SlotDefinition, flow: Flow) -> bool:
    """A question about the pending question rather than a new task ("where do I find the
    order number?" while asked for it, read as tracking an order): the flow it resembles
    would ask for the very slot pending, and the message asks nothing new of it."""
    collects = {s.collect for s in m.turn.flows.collect_steps_of(flow)}
    return (
        pending.name in collects
        and (m.question or _repeats_the_question(m))
        and not m.parse.entities
        and not _REQUEST.search(m.parse.text)
        and not _CHANGE_OF_MIND.search(m.parse.text)
    )


def _phrases(text: str) -> set[str]:
    """English word pairs and Chinese three-character runs of a text."""
    text = _TEMPLATE.sub(" ", text.lower())
    words = re.findall(r"[a-z]+", text)
    out = {f"{a} {b}" for a, b in itertools.pairwise(words)}
    for run in re.findall(r"[\u4e00-\u9fff]{3,}", text):
        out |= {run[i : i + 3] for i in range(len(run) - 2)}
    return out


def _repeats_the_question(m: _Reading) -> bool:
    """The message repeats a phrase of the pending question ("订单号忘了" to "请提供您的订单号",
    "no idea what my order number is"): it is about that question."""
    said = _phrases(m.parse.text)
    if not said or m.pending is None:
        return False
    for variation in m.turn.domain.responses.get(str(m.pending.get("utter")), ()):
        for text in (variation.text or "", *variation.translation.values()):
            if said & _phrases(text):
                return True
    return False


def _running_task(m: _Reading) -> list[cmd.Command] | None:
    """The customer asked again for the task that is running: the slots they filled with it,
    or (no answer to the pending question in it) the question is not answered."""
    repeated = _entity_slots(m.turn, m.parse, skip=set())
    if not (m.candidates and m.active is not None and (m.confident or repeated)):
        return None
    if repeated or m.pending_slot is None:
        return repeated
    # "I don't have the order number": about the task, but no answer to the question
    return [cmd.RejectValue(m.pending_slot.name, m.parse.text)]


def _chitchat(m: _Reading) -> list[cmd.Command] | None:
    """Small talk the domain has a response for."""
    if not m.small_talk:
        return None
    # an intent the rules chose over the classifier's ("refund 要多久到账啊") is named
    return [cmd.ChitChat(intent=m.parse.intent if m.parse.intent != m.classified else None)]


def _unfit_answer(m: _Reading) -> list[cmd.Command] | None:
    """Words meant as the answer to the pending question that do not fit its slot."""
    if m.pending_slot is not None and (m.confident or not m.question):
        return [cmd.RejectValue(m.pending_slot.name, m.parse.text)]
    return None


_RULES: tuple[Callable[[_Reading], list[cmd.Command] | None], ...] = (
    _human_or_cancel,
    _pattern,
    _answer_to_pending,
    _correction,
    _digression,
    _task_in_clause,
    _new_flow,
    _running_task,
    _chitchat,
    _unfit_answer,
)
"""The generator's rules in order of precedence; the first with commands wins."""


_QUESTION_START = re.compile(
    r"^(what|how|when|where|why|which|who|whose|can|could|do|does|did|is|are|will|would|"
    r"should|may|shall|have|has)\b",
    re.IGNORECASE,
)
_QUESTION_WORDS = (
    "吗",
    "呢",
    "怎么",
    "什么",
    "如何",
    "多少",
    "哪",
    "几",
    "为什么",
    "能不能",
    "可不可以",
    "是否",
    "多久",
    "多长时间",
    "谁",
    "啥",
    "咋",
)


def looks_like_question(text: str) -> bool:
    """A question for the knowledge base rather than an answer to the bot's own question."""
    stripped = text.strip()
    if not stripped:
        return False
    if stripped.endswith(("?", "？")) or _QUESTION_START.match(stripped):
        return True
    return any(word in stripped for word in _QUESTION_WORDS)


def _answer(
    turn: Turn, parse: Parse, slot: SlotDefinition, synonyms: Mapping[str, str], *, question: str
) -> SlotValue | None:
    """The message read as a value of ``slot``: a typed button title, else the parsed value
    (an entity where the slot needs one)."""
    if not parse.text.strip():
        return None
    typed = _typed_button(turn, slot, parse.text, question)
    if typed is not None:
        return typed
    answer = parse_slot_value(
        slot,
        parse.text,
        list(parse.entities),
        language=parse.language,
        synonyms=synonyms,
        echo=_question_verbs(turn, question) if slot.type == "bool" else (),
    )
    if answer is not None and answer.source != "entity" and _needs_entity(slot):
        return None
    return answer


def _typed_button(turn: Turn, slot: SlotDefinition, text: str, question: str) -> SlotValue | None:
    """The customer typed the title of a button of the ``question`` response (``Yes`` for a
    button ``/SetSlots(confirm=true)``): the answer is that button's value."""
    phrase = normalize_phrase(text)
    for variation in turn.domain.responses.get(question, ()):
        titles = [(b.title, b.payload) for b in variation.buttons]
        for translated in variation.button_translations.values():
            titles += zip(translated, (b.payload for b in variation.buttons), strict=False)
        for title, payload in titles:
            values = set_slots_of(payload) if normalize_phrase(title) == phrase else None
            if values and slot.name in values:
                return SlotValue(values[slot.name], "parsed")
    return None


_ECHO_WORD = re.compile(r"[a-z]{3,}|[\u4e00-\u9fff]+")
_TEMPLATE = re.compile(r"\{[^}]*\}")


def _echo_words(text: str) -> set[str]:
    """English words and Chinese character pairs of a text, for :func:`_question_verbs`."""
    out: set[str] = set()
    for run in _ECHO_WORD.findall(_TEMPLATE.sub(" ", text.lower())):
        out |= {run} if run.isascii() else {run[i : i + 2] for i in range(len(run) - 1)}
    return out


def _question_verbs(turn: Turn, question: str) -> frozenset[str]:
    """What a yes/no question asks to do, as a customer may repeat it to say yes ("cancel it"
    to "Do you want me to cancel it?", "取消吧" to "确定要取消这个订单吗？"): the words its
    yes button shares with its text and its no button does not ("cancel" of "Yes, cancel
    it" / "No, keep it")."""
    verbs: set[str] = set()
    for variation in turn.domain.responses.get(question, ()):
        texts = [variation.text or "", *variation.translation.values()]
        titles = [[b.title for b in variation.buttons]]
        titles += [list(t) for t in variation.button_translations.values()]
        payloads = [b.payload for b in variation.buttons]
        for text in texts:
            asked = _echo_words(text)
            for row in titles:
                yes = [t for t, p in zip(row, payloads, strict=False) if _sets_true(p)]
                no = [t for t, p in zip(row, payloads, strict=False) if _sets_false(p)]
                for title in yes:
                    verbs |= (_echo_words(title) & asked) - set().union(*map(_echo_words, no))
    return frozenset(verbs)


def _sets_true(payload: str) -> bool:
    values = set_slots_of(payload) or {}
    return list(values.values()) == [True]


def _sets_false(payload: str) -> bool:
    values = set_slots_of(payload) or {}
    return list(values.values()) == [False]


def _needs_entity(slot: SlotDefinition) -> bool:
    """A slot filled only from an entity (an order number) does not take free text."""
    kinds = {m.type for m in slot.mappings}
    return "from_entity" in kinds and not kinds & {"from_text", "from_llm"}


def _takes_any_text(slot: SlotDefinition) -> bool:
    """A slot mapped only ``from_text`` (a message left for the team, a survey comment) takes
    whatever the customer writes, even words that sound like small talk or another task."""
    return {m.type for m in slot.mappings} == {"from_text"}


def _is_bool_answer(slot: SlotDefinition | None, answer: object) -> bool:
    return slot is not None and slot.type == "bool" and answer is not None


def _pattern_trigger(turn: Turn, parse: Parse) -> str | None:
    if parse.intent is None:
        return None
    for flow in turn.flows.flows.values():
        if flow.is_pattern and any(
            t.intent == parse.intent and parse.confidence >= t.min_confidence
            for t in flow.nlu_triggers
        ):
            return flow.id
    return None


def _triggered_flows(turn: Turn, parse: Parse) -> list[Flow]:
    """User flows whose ``nlu_trigger`` the ranking satisfies, or that the description router
    chose, and whose guard holds, best first."""
    found: list[Flow] = []
    ranking = (
        parse.ranking or ((parse.intent, parse.confidence),) if parse.intent else parse.ranking
    )
    slots = turn.slots()
    for intent, confidence in ranking[:3]:
        if intent is None or (intent != parse.intent and confidence < DIGRESSION_CONFIDENCE / 3):
            continue
        for flow in turn.flows.user_flows():
            if flow in found or not any(
                t.intent == intent and confidence >= t.min_confidence for t in flow.nlu_triggers
            ):
                continue
            if intent != parse.intent and not found:
                continue  # runners-up only matter beside a first choice
            if flow.guard is not None and not compile_condition(flow.guard).evaluate(slots):
                continue
            found.append(flow)
    for flow_id, _similarity in parse.flows[:1]:  # the description router's choice
        routed = turn.flows.get(flow_id)
        if (
            routed is not None
            and routed not in found
            and (routed.guard is None or compile_condition(routed.guard).evaluate(slots))
        ):
            found.append(routed)
    return found


def _needs_clarification(turn: Turn, parse: Parse, flows: list[Flow]) -> bool:
    if len(flows) < 2 or parse.from_payload or len(parse.ranking) < 2:
        return False
    first, second = parse.ranking[0][1], parse.ranking[1][1]
    return first < DIGRESSION_CONFIDENCE and first - second < CLARIFY_MARGIN


def _is_small_talk(turn: Turn, parse: Parse) -> bool:
    return parse.intent is not None and turn.domain.has_response(f"utter_{parse.intent}")


def _answer_intent(turn: Turn, parse: Parse) -> str | None:
    """An intent among the first two that a response answers (``utter_<intent>``)."""
    for intent, confidence in parse.ranking[:2]:
        if confidence >= ANSWER_INTENT_CONFIDENCE and turn.domain.has_response(f"utter_{intent}"):
            return intent
    return None


def _slots_for_entity(turn: Turn, entity: str) -> list[str]:
    return [
        name
        for name, slot in turn.domain.slots.items()
        if any(m.type == "from_entity" and m.entity == entity for m in slot.mappings)
    ]


def _entity_slots(turn: Turn, parse: Parse, *, skip: set[str]) -> list[cmd.Command]:
    """Slots of the running flows that entities in the message fill."""
    wanted = set()
    for frame in turn.state.stack:
        flow = turn.flows.get(frame["flow_id"])
        if flow is not None:
            wanted |= {s.collect for s in turn.flows.collect_steps_of(flow)}
    out: list[cmd.Command] = []
    for entity in parse.entities:
        for name in _slots_for_entity(turn, str(entity.get("entity"))):
            if name in wanted and name not in skip and turn.slots().get(name) is None:
                out.append(cmd.SetSlot(name, entity.get("value")))
    return out


def _prefill(
    turn: Turn, parse: Parse, flow: Flow, synonyms: Mapping[str, str]
) -> list[cmd.Command]:
    """Slots the new flow will ask for that the message already answers ("a lamp under 200
    yuan": the budget; "charged twice": the kind of payment problem), each value read as its
    slot's type; a choice only when the message names exactly one of the slot's values."""
    wanted = {s.collect for s in turn.flows.collect_steps_of(flow)}
    out: list[cmd.Command] = []
    before = _told_before(turn)
    for name in sorted(wanted):
        slot = turn.domain.slots.get(name)
        if slot is None or slot.type != "categorical" or turn.slots().get(name) is not None:
            continue
        for text in filter(None, (parse.text, before)):
            choice = parse_slot_value(slot, text, [], language=parse.language, synonyms=synonyms)
            if choice is not None:
                out.append(cmd.SetSlot(name, choice.value))
                break
    for entity in parse.entities:
        for name in _slots_for_entity(turn, str(entity.get("entity"))):
            if name not in wanted:
                continue
            value = parse_slot_value(
                turn.domain.slots[name],
                str(entity.get("value")),
                [entity],
                language=parse.language,
                synonyms=synonyms,
            )
            if value is not None:
                out.append(cmd.SetSlot(name, value.value))
    return out


def _told_before(turn: Turn) -> str:
    """The customer's message before this one, when the bot answered it and no task is
    running: what a request follows up on ("my watch stopped working" ... "I just want my
    money back": the reason is the fault). Empty otherwise."""
    if top_user_frame(turn.state.stack) is not None:
        return ""
    transcript = turn.state.transcript
    if len(transcript) < 2 or transcript[-1][0] != "bot":
        return ""
    earlier = [text for speaker, text in transcript if speaker == "user"]
    return earlier[-1] if earlier else ""


ENTITY_LED_CONFIDENCE = 0.05
"""How likely an intent must still be for an entity in the message to make it the one meant."""


def _entity_led(turn: Turn, parse: Parse) -> Parse:
    """A message naming something a task needs ("when does KF-10001 get here?") is about that
    task, not the general question its words resemble: with no flow chosen, the intent of the
    flow that collects the entity's slot wins, taken from the buttons of the response that
    answers the first intent ("Where is my order?" under the delivery times), else from the
    ranking. A flow chosen that collects none of it ("STILL no refund, order KF-10006!" read
    as a complaint) gives way to a likely runner-up that does."""
    if parse.from_payload or not parse.entities:
        return parse
    slots = {n for e in parse.entities for n in _slots_for_entity(turn, str(e.get("entity")))}
    if not slots:
        return parse
    chosen = _flow_intent(turn, parse.intent)
    if chosen is not None:
        if {s.collect for s in turn.flows.collect_steps_of(chosen)} & slots:
            return parse
        ranked = [
            i for i, c in parse.ranking[:3] if c >= ENTITY_TASK_CONFIDENCE and i != parse.intent
        ]
        return _promoted(turn, parse, ranked, slots)
    suggested = _suggested_intents(turn, parse.intent)
    ranked = [i for i, c in parse.ranking if c >= ENTITY_LED_CONFIDENCE and i != parse.intent]
    return _promoted(turn, parse, [*suggested, *ranked], slots)


def _promoted(turn: Turn, parse: Parse, intents: list[str], slots: set[str]) -> Parse:
    """``parse`` with the first of ``intents`` whose flow collects one of ``slots`` made its
    intent (at least :data:`DIGRESSION_CONFIDENCE` sure), or unchanged."""
    for intent in intents:
        flow = _flow_intent(turn, intent)
        if flow is not None and {s.collect for s in turn.flows.collect_steps_of(flow)} & slots:
            return _with_intent(parse, intent)
    return parse


def _with_intent(parse: Parse, intent: str) -> Parse:
    confidence = max(parse.confidence, DIGRESSION_CONFIDENCE)
    rest = tuple((i, c) for i, c in parse.ranking if i != intent)
    return replace(
        parse, intent=intent, confidence=confidence, ranking=((intent, confidence), *rest)
    )


def _requested(turn: Turn, parse: Parse) -> Parse:
    """A request ("I want to return something", "我要退货", "could you send me my invoice?")
    whose words also resemble a policy question is the task: when the first intent is
    answered by a response, the flow that response offers as a next step (its buttons:
    "Send me my invoice" under the invoice policy) wins, else the second intent where it
    starts a flow, likely enough. A question that is no request stays a question."""
    if parse.from_payload or len(parse.ranking) < 2:
        return parse
    polite = _POLITE_REQUEST.search(parse.text) is not None
    if looks_like_question(parse.text) and not polite:
        return parse
    (first, _), (second, confidence) = parse.ranking[0], parse.ranking[1]
    if (
        parse.intent != first
        or not _answers(turn, first)
        or not (polite or _REQUEST.search(parse.text))
        or _ASKING.search(parse.text)
    ):
        return parse
    offered = [
        intent
        for intent in _suggested_intents(turn, first)
        if intent != first and _flow_intent(turn, intent) is not None
    ]
    if len(offered) == 1:
        return _with_intent(parse, offered[0])
    if confidence < REQUEST_TASK_CONFIDENCE or _flow_intent(turn, second) is None:
        return parse
    return _with_intent(parse, second)


def _asked(turn: Turn, parse: Parse) -> Parse:
    """A question that reads as a task and as a policy question alike ("refund 要多久到账啊":
    checking one's refund, or how long refunds take): when the policy's answer offers that
    task as its next step (a button), the answer comes first and the customer may press it."""
    if (
        parse.from_payload
        or len(parse.ranking) < 2
        or parse.entities
        or not looks_like_question(parse.text)
        or _REQUEST.search(parse.text)
        or _POLITE_REQUEST.search(parse.text)
    ):
        return parse
    (first, p_first), (second, p_second) = parse.ranking[0], parse.ranking[1]
    if (
        parse.intent != first
        or p_first - p_second >= CLARIFY_MARGIN
        or _flow_intent(turn, first) is None
        or not _answers(turn, second)
        or first not in _suggested_intents(turn, second)
    ):
        return parse
    return _with_intent(parse, second)


def _suggested_intents(turn: Turn, intent: str | None) -> list[str]:
    """The intents of the buttons of the response that answers ``intent`` (``/track_order``
    under the delivery times)."""
    return [
        payload[1:]
        for variation in turn.domain.responses.get(f"utter_{intent}", ())
        for payload in (b.payload for b in variation.buttons)
        if payload.startswith("/") and not payload.startswith("/SetSlots")
    ]


def _answers(turn: Turn, intent: str) -> bool:
    """Whether a response answers ``intent`` (``utter_<intent>``) and no flow starts on it."""
    return turn.domain.has_response(f"utter_{intent}") and _flow_intent(turn, intent) is None


def _flow_intent(turn: Turn, intent: str | None) -> Flow | None:
    """The user flow ``intent`` starts (its guard holding), if any."""
    if intent is None:
        return None
    slots = turn.slots()
    for flow in turn.flows.user_flows():
        if any(t.intent == intent for t in flow.nlu_triggers) and (
            flow.guard is None or compile_condition(flow.guard).evaluate(slots)
        ):
            return flow
    return None


def _corrections(turn: Turn, parse: Parse, active: Frame | None) -> dict[str, object]:
    """Entities that change a slot the running flow already collected."""
    if active is None:
        return {}
    collected: set[str] = set()
    frames = user_frames(turn.state.stack)
    for frame in reversed(frames[: frames.index(active) + 1] if active in frames else [active]):
        flow = turn.flows.get(str(frame["flow_id"]))
        if flow is not None:
            collected |= {s.collect for s in turn.flows.collect_steps_of(flow)}
        if frame.get("frame_type") != "call":
            break  # a called flow's callers' slots can be corrected too; an interrupted flow's not
    slots = turn.slots()
    changes: dict[str, object] = {}
    for entity in parse.entities:
        for name in _slots_for_entity(turn, str(entity.get("entity"))):
            value = entity.get("value")
            if name in collected and slots.get(name) is not None and slots.get(name) != value:
                changes[name] = value
    return changes
