"""The core of an ask, independent of any front end: settings and errors, the results and events an ask
produces, the words sent to the model (prompts), the code found in its replies (extract), the repair loop and
the vote, and the :class:`~ci_magic.core.interpreter.Interpreter` that ties them to a model and a sandbox."""
