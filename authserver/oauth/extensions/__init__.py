"""Add-ons attached to the base grants through Authlib's hooks."""
