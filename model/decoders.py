"""The names of the greedy decoders ``model.generation`` offers (its docstring says what each does).

Kept apart from ``model.generation`` because that module imports torch: the eval commands list
these names in ``--help`` and check ``--decoder`` without loading it.
"""

DECODERS = ("auto", "generate", "static", "compiled", "graphed")
