"""The MCP server (``mcp-local-provider mcp``) that lets an MCP host's agent serve as the model.

Needs the optional MCP SDK (``pip install 'mcp-local-provider[mcp]'``). Only ``server`` and
``sampling`` import it; nothing in the rest of the package imports this package.
"""
