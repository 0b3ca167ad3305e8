"""The test harness: a real Mosquitto on loopback (:mod:`.broker`), a cuttable TCP proxy (:mod:`.proxy`),
MQTT load and child processes (:mod:`.mqttload`), test certificate authorities (:mod:`.certs`).

Used by the tests and by the benchmarks that start a broker. The wheel leaves this package out
(pyproject.toml), so it exists only in a source checkout.
"""
