"""Rasa CALM flows: the model, the YAML parser and the condition language."""

from bot.flows.conditions import Condition, compile_condition
from bot.flows.model import END, Flow, FlowsList
from bot.flows.parser import parse_flows

__all__ = [
    "END",
    "Condition",
    "Flow",
    "FlowsList",
    "compile_condition",
    "parse_flows",
]
