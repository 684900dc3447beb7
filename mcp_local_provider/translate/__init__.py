"""Translation between the editor-facing APIs and agent protocol payloads. Pure: no I/O."""
