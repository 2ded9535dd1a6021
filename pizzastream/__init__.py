"""Business rules of the pizza chain's order pipeline.

Plain Python on purpose: nothing here imports Flink, so the rules run and are tested
without a cluster, and the Flink jobs in ``jobs/`` only adapt them to state and streams.
"""
