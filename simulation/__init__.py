"""Made-up load for the pipeline, kept apart from the rules it exercises.

``traffic``: realistic, deterministic order records for the ``orders`` stream (the demo,
the load generator, the benchmarks' profile and the tests). ``simulate``: a week of store
traffic through the real stock rules (``python -m simulation.simulate``).

Nothing deployed imports this package: it is not in the MSF zip, the Lambda package or the
container image. It imports the rules (``pizzastream``) and never the other way round.
"""
