"""ci_magic for other agents: its sandbox and loop behind the Model Context Protocol (``mcp_server.py``) and the
Agent Client Protocol (``acp_agent.py``), over one protocol-free session (``session.py``)."""
