"""Development and test tooling: a private Redis, ports, the one-terminal stack."""
