"""The aiohttp shell: one module of routes per API family."""
