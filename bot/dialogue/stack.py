"""The dialogue stack: frames for running flows and patterns, stored as plain dicts.

A frame is ``{"frame_id", "type", "flow_id", "step_id", ...}``. ``type`` is ``"flow"`` for a
customer's flow (with ``frame_type`` ``regular``, ``interrupt``, ``call`` or ``link``) and the
pattern's id for a pattern frame, whose other keys are the pattern's ``context``
(``collect``, ``utter``, ``canceled_name``...). ``step_id`` is the last step run, ``START``
before the first. The shape follows Rasa's so rasa-sdk actions can read ``tracker.stack``.
"""

from __future__ import annotations

import uuid
from typing import Any

START = "START"
USER_FLOW = "flow"

Frame = dict[str, Any]


def new_frame(flow_id: str, *, frame_type: str = "regular", **context: Any) -> Frame:
    """A frame for ``flow_id``, about to run its first step."""
    is_pattern = flow_id.startswith("pattern_")
    frame: Frame = {
        "frame_id": uuid.uuid4().hex[:10],
        "type": flow_id if is_pattern else USER_FLOW,
        "flow_id": flow_id,
        "step_id": START,
    }
    if not is_pattern:
        frame["frame_type"] = frame_type
    frame.update(context)
    return frame


def is_user_frame(frame: Frame) -> bool:
    return frame.get("type") == USER_FLOW


def top_user_frame(stack: list[Frame]) -> Frame | None:
    """The customer's flow that is running now (patterns above it aside)."""
    for frame in reversed(stack):
        if is_user_frame(frame):
            return frame
    return None


def user_frames(stack: list[Frame]) -> list[Frame]:
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
