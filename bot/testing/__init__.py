"""Test doubles and helpers kefu's users can test their own bots with."""
