"""mcp-local-provider: an approved AI agent, served to your editor as a local model."""

__version__ = "0.1.0"
