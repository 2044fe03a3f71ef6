"""Offline understanding: NLU training data, entities, slot values and language."""

from bot.understanding.entities import EntityExtractor
from bot.understanding.language import detect_language
from bot.understanding.training_data import EntityAnnotation, Example, TrainingData, parse_nlu
from bot.understanding.values import SlotValue, parse_bool, parse_number, parse_slot_value

__all__ = [
    "EntityAnnotation",
    "EntityExtractor",
    "Example",
    "SlotValue",
    "TrainingData",
    "detect_language",
    "parse_bool",
    "parse_nlu",
    "parse_number",
    "parse_slot_value",
]
