"""Token endpoints other than /token: introspection (RFC 7662) and revocation (RFC 7009)."""
