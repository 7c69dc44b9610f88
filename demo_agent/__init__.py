"""Demo agent, mock brokerage API and mock calendar provider for the authorization server."""
