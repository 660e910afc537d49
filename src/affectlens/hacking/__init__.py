"""Reward-hacking experiment, model-independent part.

A model gets coding tasks whose visible tests no spec-correct solution can pass (plus solvable
controls); with each failed attempt it may start to cheat. Modules, one concern each:

* ``tasks`` - the shipped task suite (``data/coding_tasks/*.json``).
* ``sandbox`` - runs untrusted code against tests in a contained child process.
* ``extract_code`` - pulls the solution module out of a free-form answer.
* ``detector`` - labels a solution ``honest_pass``, ``honest_fail`` or ``hack`` with evidence.
* ``agent`` - the lockstep multi-attempt loop against an abstract ``Policy``, and its JSONL store.
"""
