"""ci_magic for other agents: its sandbox and loop behind the Model Context Protocol (``mcp_server.py``)."""
