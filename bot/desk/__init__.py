"""The handoff desk: tickets, the agents' moves on them, and the relay both ways.

:class:`~bot.desk.desk.Desk` implements the core's ``HandoffDesk`` port. It keeps every
ticket in the store and talks to the agents' workspace only through a
:class:`~bot.desk.board.DeskBoard` (the Slack adapter in ``channels/slack.py`` is one), and to
the conversation only through ``ConversationControl``.
"""

from bot.desk.board import DeskBoard, FileRef, FileSource
from bot.desk.desk import Desk
from bot.desk.tickets import Status, Ticket
from bot.desk.triggers import HandoffTriggers

__all__ = ["Desk", "DeskBoard", "FileRef", "FileSource", "HandoffTriggers", "Status", "Ticket"]
