"""Parses a Prometheus text exposition (stdin) with prometheus_client's own parser and prints
every sample as JSON lines: {"name", "labels", "value", "type"}. A format error fails loudly."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
for family in text_string_to_metric_families(text):
    for s in family.samples:
        print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type}))
