"""An ask from question to answer, above context, providers, sandbox and observe: the words sent to the model
(prompts), the code found in its replies (extract), one attempt (step), the repair loop and the vote, the answer
in words and the rescue of a failed ask, the files brought back (delivery), the sandbox slot (executors), and the
:class:`~ci_magic.engine.interpreter.Interpreter` that ties them to a model and a sandbox for one session."""
