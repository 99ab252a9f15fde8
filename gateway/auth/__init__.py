"""Partner authentication: JWT verification with per-issuer key sources and a verified-token cache."""
