"""Custom actions of the Rasa-layout test project."""
