"""Kafka adapters: confluent-kafka clients, topic admin and the local broker manager."""
