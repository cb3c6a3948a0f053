"""Dispatch: claimed triggers -> rendered requests -> targets, with retries."""
