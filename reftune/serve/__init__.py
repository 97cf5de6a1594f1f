"""An OpenAI-compatible HTTP server over any model reftune loads (`reftune serve`)."""
