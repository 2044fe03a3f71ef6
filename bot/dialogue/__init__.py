"""The dialogue manager: a stack of flows and patterns, driven by commands from understanding."""
