"""Adapters: blocking, asyncio and trio I/O around the Sans-IO core and the policy."""
