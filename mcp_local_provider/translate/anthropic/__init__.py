"""The Anthropic Messages dialect: requests in (``request``), answers out (``reply``)."""
