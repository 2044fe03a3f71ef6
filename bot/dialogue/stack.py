"""The dialogue stack: frames for running flows and patterns, typed, stored as plain dicts.

A :class:`Frame` is a ``TypedDict``: at run time it is the very dict the conversation state
stores as JSON (so states saved before the type existed load unchanged) and the one rasa-sdk
actions read in ``tracker.stack``, whose shape follows Rasa's.

``type`` is ``"flow"`` for a customer's flow (with ``frame_type`` ``regular``, ``interrupt``,
``call`` or ``link``) and the pattern's id for a pattern frame, whose other keys are the
pattern's ``context`` (:class:`PatternContext`: ``collect``, ``utter``, ``canceled_name``...).
``step_id`` is the last step run, ``START`` before the first.
"""

from __future__ import annotations

import uuid
from typing import Any, Required, TypedDict, Unpack, cast

START = "START"
USER_FLOW = "flow"


Rejection = TypedDict("Rejection", {"if": str, "utter": str | None})
"""One of a collect step's ``rejections``: a condition on the new value and what to say then
(the functional form, because ``if`` is a keyword)."""


class PatternContext(TypedDict, total=False):
    """What a pattern frame carries besides its place in the flow (Rasa's pattern context),
    readable in the pattern's flow as ``context.<key>``."""

    collect: str
    """pattern_collect_information: the slot asked for."""
    utter: str
    """pattern_collect_information: the response (or ``action_ask_<slot>``) that asks."""
    collect_action: str
    rejections: list[Rejection]
    owner: str
    """The id of the frame that pushed this one (a collect pattern's flow)."""
    canceled_name: str
    canceled_frames: list[str]
    corrected_slots: dict[str, Any]
    clarification_options: list[str]
    intent: str
    """pattern_chitchat: the intent whose ``utter_<intent>`` answers."""
    reason: str
    error_type: str
    interrupted_flow_options: str
    interrupted_frame: str
    previous_flow_name: str


class Frame(PatternContext, total=False):
    """One entry of the dialogue stack (see the module's docstring)."""

    frame_id: Required[str]
    type: Required[str]
    flow_id: Required[str]
    step_id: Required[str]
    frame_type: str
    """A customer's flow only: ``regular``, ``interrupt``, ``call`` or ``link``."""
    rejected_text: str
    """A collect frame: the answer that did not fit the slot's type, until it is explained."""
    asked: bool
    """A collect frame: its question has been asked."""
    failures: int
    """A collect frame: turns that left its slot empty since it was asked."""
    change_tack: bool
    """A collect frame: enough failures to ask differently (``action_collect_trouble``)."""


def new_frame(
    flow_id: str, *, frame_type: str = "regular", **context: Unpack[PatternContext]
) -> Frame:
    """A frame for ``flow_id``, about to run its first step."""
    is_pattern = flow_id.startswith("pattern_")
    base = {
        "frame_id": uuid.uuid4().hex[:10],
        "type": flow_id if is_pattern else USER_FLOW,
        "flow_id": flow_id,
        "step_id": START,
    }
    frame = cast("Frame", base | context)  # the pattern's context after its place, as stored
    if not is_pattern:
        frame["frame_type"] = frame_type
    return frame


def is_user_frame(frame: Frame) -> bool:
    """Whether ``frame`` runs a customer's flow rather than a pattern."""
    return frame.get("type") == USER_FLOW


def top_user_frame(stack: list[Frame]) -> Frame | None:
    """The customer's flow that is running now (patterns above it aside)."""
    for frame in stack[::-1]:
        if is_user_frame(frame):
            return frame
    return None


def user_frames(stack: list[Frame]) -> list[Frame]:
    """The frames of customers' flows, bottom first."""
    return [f for f in stack if is_user_frame(f)]


def frames_from(stack: list[Frame], frame: Frame) -> list[Frame]:
    """``frame`` and every frame above it."""
    index = next(i for i, f in enumerate(stack) if f["frame_id"] == frame["frame_id"])
    return stack[index:]


def remove_frames(stack: list[Frame], frame_ids: set[str]) -> list[Frame]:
    """Remove the frames with these ids in place; return the removed ones, bottom first."""
    removed = [f for f in stack if f["frame_id"] in frame_ids]
    stack[:] = [f for f in stack if f["frame_id"] not in frame_ids]
    return removed


def collecting(stack: list[Frame]) -> Frame | None:
    """The collect pattern frame waiting for the customer's answer, if that is the top."""
    if stack and stack[-1].get("type") == "pattern_collect_information":
        return stack[-1]
    return None
