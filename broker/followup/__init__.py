"""Floor 7, what follows a dispatch: run tracking, `produces` events, alerts, dead letters."""
