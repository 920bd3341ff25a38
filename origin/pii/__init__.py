"""PII redaction of user text before it reaches an LLM prompt (Microsoft Presidio, pattern recognizers only)."""
