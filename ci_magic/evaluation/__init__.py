"""``ci-magic eval``: DABench-format questions through the same loop, and their ``@name[value]`` answer rules."""
