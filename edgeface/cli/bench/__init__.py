"""``edgeface bench ...``: benchmarks that print tables and can write their figures as JSON.

One module per family, each registered here:

=============  ==============================================================================
``accuracy``   detect, lfw, identify, pipeline: the recognition chain on LFW
``index``      index, delta: gallery search and the bytes of a gallery update
``mqtt``       outbox, faults: store and forward on a real broker
``ingest``     ingest, ingest-fuzz: the central ingest's throughput and robustness
``retention``  purge: the central retention purge's time holding the database, and its memory
``unit``       e2e (and the stream mode of pipeline): the field unit end to end
``peer``       peer: edgeface side by side with face_recognition (dlib) on one core
=============  ==============================================================================

The runners live in :mod:`edgeface.bench`, the evaluation library in :mod:`edgeface.evaluation`,
and the broker/proxy/load harness some of them start in :mod:`edgeface.testing` (source checkouts only).
"""

from __future__ import annotations

import click

from . import accuracy, index, ingest, mqtt, peer, retention, unit


@click.group("bench")
def bench() -> None:
    """Benchmarks: accuracy, speed and memory figures (printed as tables)."""


for command in (
    accuracy.bench_detect,
    accuracy.bench_lfw,
    accuracy.bench_identify,
    accuracy.bench_pipeline,
    index.bench_index,
    index.bench_delta,
    mqtt.bench_outbox,
    mqtt.bench_faults,
    ingest.bench_ingest,
    ingest.bench_ingest_fuzz,
    retention.bench_purge,
    unit.bench_e2e,
    peer.bench_peer,
):
    bench.add_command(command)
