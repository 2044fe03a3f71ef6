"""The starter project's custom actions (rasa-sdk)."""
