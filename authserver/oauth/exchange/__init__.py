"""RFC 8693 token exchange: reading presented tokens and deciding what may be issued."""
