"""The OpenAI Responses dialect: requests in (``request``), answers out (``reply``)."""
