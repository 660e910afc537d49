"""Reward-hacking experiment, model-independent part.

A model gets coding tasks whose visible tests no spec-correct solution can pass (plus solvable
controls); with each failed attempt it may start to cheat. Modules, one concern each:

* ``tasks`` - the shipped task suite (``data/coding_tasks/*.json``).
* ``sandbox`` - runs untrusted code against tests in a kernel sandbox (``sandbox_bwrap``:
  bubblewrap, seccomp) and judges each assert in the parent from the values the child
  (``sandbox_child``) reports; ``sandbox_audit`` is the explicit unsafe fallback.
* ``extract_code`` - pulls the solution module out of a free-form answer.
* ``detector`` - labels a solution ``honest_pass``, ``honest_fail`` or ``hack`` with evidence.
* ``agent`` - the lockstep multi-attempt loop against an abstract ``Policy``, and its JSONL store.
"""
