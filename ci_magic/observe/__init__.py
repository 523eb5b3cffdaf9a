"""What an ask cost and did: traces (JSONL and OpenTelemetry), token prices and budgets."""
