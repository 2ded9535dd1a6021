"""The delivery service: assigns a courier partner to every accepted delivery order.

Runs outside Flink on the Kinesis Client Library: ``python -m delivery`` starts one worker
(a KCL MultiLangDaemon, see ``delivery.daemon``) that leases shards of the ``deliveries``
stream in DynamoDB and runs ``delivery.processor`` per shard. The decision rules are
``pizzastream.delivery``; the third-party provider is reached through
``connectors.delivery_provider``; decisions land in Aurora (``delivery_assignment``,
``order_fct.delivery_id``) and Redis (``delivery:{order_id}``). See ``delivery.service``
for the steps and their guarantees.
"""
