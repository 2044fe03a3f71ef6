"""Custom actions of the Kefu Shop reference assistant (rasa-sdk actions)."""
