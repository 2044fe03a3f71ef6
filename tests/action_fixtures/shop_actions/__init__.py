"""rasa-sdk actions used by tests/test_actions.py, in-process and on a real action server."""
